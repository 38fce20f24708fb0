"""The population engine trains populations that are not zoo classifiers: a regression
of planted linear maps (equal to separate runs, converging to least squares), and
stitches between two frozen nets (only the stitch trains; the nets are shared, not
copied per member)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jatlas import data, nets
from jatlas.zoo import Engine, Population, classifier, labels_data, sharding, train_data

N, D, K, T = 256, 6, 3, 4


@pytest.fixture(scope="module")
def planted():
  rng = np.random.default_rng(0)
  x_ND = rng.normal(size=(N, D)).astype(np.float32)
  w_TDK = rng.normal(size=(T, D, K)).astype(np.float32)
  y_TNK = (np.einsum("nd,tdk->tnk", x_ND, w_TDK)
           + 0.05 * rng.normal(size=(T, N, K))).astype(np.float32)
  return x_ND, w_TDK, y_TNK


def regression() -> Population:
  def init(key, member):
    return {"w": 0.1 * jax.random.normal(key, (D, K)), "b": jnp.zeros(K)}, {}

  def loss(params, state, batch, member):  # ridge: each member's own l2 (member.extra)
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2) + member.extra["l2"] * jnp.sum(params["w"] ** 2), \
        state

  def evaluate(params, state, batch, member):
    err = ((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2).sum(-1)
    return {"sse": jnp.sum(jnp.where(batch["valid"], err, 0.0)),
            "n": jnp.sum(batch["valid"]).astype(jnp.float32)}

  return Population(init=init, loss=loss, evaluate=evaluate, optimizers=("adam", "sgd"))


def test_regression_population_equals_separate_runs(planted):
  x_ND, w_TDK, y_TNK = planted
  eng = Engine(regression(), batch_size=32, steps_per_epoch=N // 32)
  m, steps = 6, 400
  l2_M = np.array([0, 0.05, 0, 0.05, 0, 0.05], np.float32)
  members = eng.members(seed=np.arange(m), task=np.arange(m) % T,
                        lr=[1e-2, 1e-2, 2e-2, 2e-2, 1e-2, 1e-2],
                        optimizer=["adam"] * 4 + ["sgd"] * 2, extra={"l2": l2_M})
  d = eng.put(train_data(x_ND, y_TNK))
  states, loss_SM = eng.run(eng.init(members), members, d, 0, steps)
  assert len(jax.devices()) == 8 and members.task.shape[0] == 8  # padded to the 8 devices
  loss_SM = np.asarray(loss_SM)
  assert np.isnan(loss_SM[:, m:]).all()  # the padding members never train
  train_one = jax.jit(eng.train_member, static_argnums=(4,))
  for i in range(m):
    member = jax.tree.map(lambda a: a[i], members)
    state, loss_S = train_one(eng.init_member(member), member, d, jnp.int32(0), steps)
    np.testing.assert_allclose(loss_SM[:, i], loss_S, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(states.params["w"][i], state.params["w"], rtol=1e-5, atol=1e-6)
  # each member found its own task's ridge solution (Xc'Xc + N K l2) w = Xc'Yc, centred
  xc = x_ND - x_ND.mean(0)
  for i in range(m):
    yc = y_TNK[i % T] - y_TNK[i % T].mean(0)
    w = np.linalg.solve(xc.T @ xc + N * K * l2_M[i] * np.eye(D), xc.T @ yc)
    np.testing.assert_allclose(states.params["w"][i], w, atol=0.03)
  sums = jax.device_get(eng.evaluate(states, members, d))
  pred = np.einsum("nd,mdk->mnk", x_ND, np.asarray(states.params["w"][:m])) + \
      np.asarray(states.params["b"][:m])[:, None]
  want = ((pred - y_TNK[np.arange(m) % T]) ** 2).sum((1, 2))
  np.testing.assert_allclose(sums["sse"][:m], want, rtol=1e-4)
  np.testing.assert_array_equal(sums["n"][:m], N)


def stitching(sender, receiver, tap: str, width: int) -> Population:
  """An affine stitch from the sender's `tap` into the receiver after `tap`."""
  def init(key, member):
    return {"stitch": {"w": jnp.eye(width) + 0.01 * jax.random.normal(key, (width, width)),
                       "b": jnp.zeros(width)}}, {}

  def loss(params, state, batch, member):
    h = sender.apply(params["sender"], batch["x"], stop=tap)
    h = h @ params["stitch"]["w"] + params["stitch"]["b"]
    logits = receiver.apply(params["receiver"], h, start=tap)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), state

  return Population(init=init, loss=loss)


def test_stitch_between_frozen_nets_trains_only_the_stitch():
  ds = data.load_digits(size=8)
  tasks = data.multiclass(ds)
  net = nets.MLP(hidden=(12, 12))
  d = labels_data(ds.x_train, tasks.labels["train"])
  # two digit classifiers of different seeds, trained as a population: sender and receiver
  zoo = Engine(classifier(net, ds.x_train[:1]), batch_size=32, steps_per_epoch=20)
  two = zoo.members(seed=[1, 2], lr=1e-2)
  trained, _ = zoo.run(zoo.init(two), two, zoo.put(d), 0, 300)
  frozen = {role: {"params": jax.tree.map(lambda a: np.asarray(a[i]), trained.params)}
            for i, role in enumerate(("sender", "receiver"))}
  eng = Engine(stitching(net, net, "fc1", 12), batch_size=32, steps_per_epoch=20,
               frozen=frozen, mesh=sharding.population_mesh(jax.devices()[:2]))
  members = eng.members(seed=np.arange(4), lr=[1e-2, 3e-3, 1e-2, 3e-3])
  d = eng.put(d)
  states = eng.init(members)
  assert set(states.params) == {"stitch"}  # the nets get no member axis and no optimizer
  assert all(a.shape[0] == 4 for a in jax.tree.leaves(states.opt_state) if a.ndim)
  before = jax.tree.map(np.asarray, states.params)
  states, loss_SM = eng.run(states, members, d, 0, 100)
  loss_SM = np.asarray(loss_SM)
  assert (loss_SM[-10:].mean(0) < loss_SM[:10].mean(0) - 0.2).all()  # every stitch learns
  assert not np.allclose(states.params["stitch"]["w"], before["stitch"]["w"])
  same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                            eng.frozen, frozen)
  assert all(jax.tree.leaves(same))  # the frozen nets are untouched
  # member 0 by hand: the same stitch trained through the public per-member function
  m0 = jax.tree.map(lambda a: a[0], members)
  state, loss_S = jax.jit(eng.train_member, static_argnums=(4,))(
      eng.init_member(m0), m0, d, jnp.int32(0), 100)
  np.testing.assert_allclose(loss_SM[:, 0], loss_S, rtol=1e-5, atol=1e-5)
