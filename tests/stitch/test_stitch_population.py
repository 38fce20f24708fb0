"""Many stitches as one population: the same answer as one stitch at a time, and as a
plain optax loop over the engine's batches."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jatlas import data, nets, stitch
from jatlas.stitch import population
from jatlas.zoo.step import StepConfig, batch_indices

DS = data.load("digits")
X, Y = DS.x_train[:192], DS.y_train[:192]
XT, YT = DS.x_test[:96], DS.y_test[:96]
NET = nets.build("resnet", stage_blocks=(1, 1), widths=(4, 8), num_classes=10)
KW = dict(x_test=XT, y_test=YT, seeds=(3, 5), epochs=2, batch_size=64, lr=3e-3)


def fake_variables(rng) -> dict:
  """Variables of NET in NumPy (fan-in scaled normal kernels, BatchNorm near identity):
  no random draws to compile, unlike NET.init."""
  shapes = jax.eval_shape(NET.init, jax.random.key(0), X[:1])

  def leaf(path, a):
    name = path[-1].key
    if name == "kernel":
      return rng.normal(0, 1 / np.sqrt(np.prod(a.shape[:-1])), a.shape).astype(np.float32)
    if name in ("scale", "var"):
      return rng.uniform(0.8, 1.2, a.shape).astype(np.float32)
    return rng.normal(0, 0.1, a.shape).astype(np.float32)  # bias, mean
  return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.fixture(scope="module")
def models():
  """Three untrained ResNets R11 (taps stem 8x8x4, block1 8x8x4, block2 4x4x8, pool)."""
  rng = np.random.default_rng(0)
  return {n: (NET, fake_variables(rng)) for n in "abc"}


def test_jobs_sharing_a_receiver_tap_train_as_one_program_like_single_stitches(
    models, monkeypatch):
  engines = []

  class Counted(population.Engine):
    def __init__(self, *a, **k):
      engines.append(1)
      super().__init__(*a, **k)
  monkeypatch.setattr(population, "Engine", Counted)
  Job = stitch.Job
  jobs = [Job("a", "stem", "b", "block1"),               # same size: 1x1 conv
          Job("a", "stem", "b", "block1", kernel=3),     # 3x3 conv
          Job("a", "block2", "b", "block1"),             # upsample + 1x1
          Job("a", "block2", "b", "block1", kernel=3),   # the adapter has no kernel: == above
          Job("c", "block1", "b", "block1"),             # another sender
          Job("a", "stem", "c", "block1", target="mse")]  # another receiver, MSE target
  out = stitch.train_jobs(models, jobs, X, Y, **KW)
  assert len(engines) == 1  # one (receiver net, receiver tap): one program
  assert out[0]["params"]["conv"]["kernel"].shape == (2, 1, 1, 4, 4)
  assert out[1]["params"]["conv"]["kernel"].shape == (2, 3, 3, 4, 4)
  for key in ("final_loss_M", "test_acc_M", "test_mse_M"):
    np.testing.assert_array_equal(out[2][key], out[3][key])
  assert not np.allclose(out[0]["test_mse_M"], out[1]["test_mse_M"])
  # each job alone (train_stitches, a population of its seeds) gives the same stitch
  for i in (1, 5):
    j = jobs[i]
    alone = stitch.train_stitches(NET, models[j.sender][1], NET, models[j.receiver][1],
                                  j.send_tap, j.recv_tap, X, Y, kernel=j.kernel,
                                  target=j.target, **{**KW, "x_test": None})
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5),
                 out[i]["params"], alone["params"])
    np.testing.assert_allclose(out[i]["final_loss_M"], alone["final_loss_M"], rtol=1e-4)
  assert len(engines) == 3


def test_a_stitch_trains_as_a_plain_optax_loop_over_the_engines_batches(models):
  (_, va), (_, vb) = models["a"], models["b"]
  seed, bs, epochs, lr = 7, 64, 2, 3e-3
  # 3x3 stem -> block1 at these sizes: job 1's program above, from the compile cache
  res = stitch.train_stitches(NET, va, NET, vb, "stem", "block1", X, Y, seeds=(seed,),
                              epochs=epochs, batch_size=bs, lr=lr, kernel=3)
  # the reference: Stitch.init from the member's stream-0 key, Adam, its batch order
  key = jax.random.key(seed)
  h_N, y_N = NET.apply(va, X, stop="stem"), jnp.asarray(Y)
  s = stitch.Stitch(out_shape=(8, 8, 4), kernel=3)
  p = s.init(jax.random.fold_in(key, 0), h_N[:2])["params"]
  tx = optax.adam(lr)
  opt = tx.init(p)

  @jax.jit
  def step(p, opt, idx):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        NET.apply(vb, s.apply({"params": p}, h_N[idx]), start="block1"), y_N[idx]).mean()
    value, g = jax.value_and_grad(loss)(p)
    up, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, up), opt, value
  cfg = StepConfig(batch_size=bs, steps_per_epoch=3)
  for t in range(epochs * 3):
    idx = batch_indices(cfg, jax.random.fold_in(key, 1), np.arange(len(X)), len(X), t, True)
    p, opt, value = step(p, opt, idx)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-5),
               res["params"], p)
  np.testing.assert_allclose(res["final_loss_M"][0], value, rtol=1e-4)


def test_direct_init_starts_each_member_from_least_squares(models):
  (_, va), (_, vb) = models["a"], models["b"]
  res = stitch.train_stitches(NET, va, NET, vb, "stem", "block1", X, Y, init="direct",
                              seeds=(3, 5), epochs=2, batch_size=64, lr=1e-12)
  want = stitch.direct_match(NET.apply(va, X, stop="stem"), NET.apply(vb, X, stop="block1"))
  for m in range(2):  # lr ~ 0: still the least-squares stitch, whatever the seed
    np.testing.assert_allclose(res["params"]["conv"]["kernel"][m], want["conv"]["kernel"],
                               atol=1e-5)


def test_bad_jobs_are_all_named_before_anything_runs(models):
  jobs = [stitch.Job("a", "stem", "z", "stem"), stitch.Job("a", "stme", "b", "stem"),
          stitch.Job("a", "stem", "b", "stem", target="cka"),
          stitch.Job("a", "stem", "b", "stem", kernel=3)]
  with pytest.raises(ValueError, match=r"(?s)4 problem.*receiver 'z' is not in models.*"
                     r"sender tap 'stme'.*target='cka'.*kernel=3"):
    stitch.train_jobs(models, jobs, X, Y, init="direct")
  with pytest.raises(ValueError, match=r"pool -> b:stem\): .*only feature maps"):
    stitch.train_jobs(models, [stitch.Job("a", "pool", "b", "stem")], X, Y)
  with pytest.raises(ValueError, match=r"GiB > max_feature_bytes"):
    stitch.train_jobs(models, [stitch.Job("a", "stem", "b", "stem")], X, Y,
                      max_feature_bytes=1000)


def test_tap_arrays_match_the_nets_own_taps_in_chunks(models):
  _, v = models["a"]
  got = stitch.tap_arrays(NET, v, X[:150], ["stem", "pool"], chunk=64)
  _, want = NET.apply(v, X[:150], return_taps=True)
  for t in ("stem", "pool"):
    np.testing.assert_allclose(got[t], want[t], rtol=1e-5, atol=1e-6)
