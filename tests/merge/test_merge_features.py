"""BatchNorm recomputation, feature averaging and learned routing against NumPy references."""
import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jatlas import data, merge, nets
from jatlas.merge import routing

# "xla" convs: these tests are about merging, the CPU conv kernels are tested in tests/nets
RESNET = nets.resnet_from_name("R11", widths=(4, 8), num_classes=3, conv_lowering="xla")
X_IMG = np.asarray(jax.random.normal(jax.random.key(0), (20, 8, 8, 1)))


def leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def np_conv3x3(x_NHWC, k_HWIO):
  """Stride 1, zero padding 1, no bias: out[n,i,j,o] = sum x[n,i+a-1,j+b-1,c] k[a,b,c,o]."""
  x = np.pad(np.asarray(x_NHWC, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  n, h, w = x_NHWC.shape[:3]
  out = np.zeros((n, h, w, k_HWIO.shape[-1]))
  for a in range(3):
    for b in range(3):
      out += np.einsum("nhwc,co->nhwo", x[:, a:a + h, b:b + w], k_HWIO[a, b])
  return out


def random_variables(net, x, seed):
  """net's variables drawn with NumPy (kernels N(0, 1/fan_in), other params and running
  statistics N(0.5, 0.1)): no compiled initializer per shape."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(net.init, jax.random.key(0), x[:1])
  def draw(path, s):
    if jax.tree_util.keystr(path).endswith("['kernel']"):
      return (rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)
    return rng.normal(0.5, 0.1, size=s.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def resnet(seed):
  return random_variables(RESNET, X_IMG, seed)  # stale statistics: not those of any input


@pytest.fixture(scope="module")
def parents():
  """Two ResNets with statistics recomputed on X_IMG (eval mode = train mode on X_IMG)."""
  return [merge.recompute_batch_stats(RESNET, resnet(s), X_IMG) for s in (1, 2)]


def train_eval_gap(v, x):
  train, _ = RESNET.apply(v, x, train=True, mutable=["batch_stats"])
  return float(np.abs(np.asarray(RESNET.apply(v, x)) - np.asarray(train)).max())


@pytest.mark.parametrize("batch_size", [256, 7])
def test_recompute_batch_stats_equals_numpy(batch_size):
  v = resnet(1)
  got = merge.recompute_batch_stats(RESNET, v, X_IMG, batch_size=batch_size)
  h = np_conv3x3(X_IMG, np.asarray(v["params"]["stem_conv"]["kernel"], np.float64))
  np.testing.assert_allclose(got["batch_stats"]["stem_bn"]["mean"], h.mean((0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["batch_stats"]["stem_bn"]["var"],
                             h.reshape(-1, h.shape[-1]).var(0, ddof=1), rtol=1e-5)
  assert got["params"] is v["params"]
  assert leaves(got["batch_stats"]).keys() == leaves(v["batch_stats"]).keys()


def test_recompute_repairs_merged_net(parents):
  merged = merge.average(parents)  # averaged weights, averaged (stale) statistics
  before = train_eval_gap(merged, X_IMG)
  after = train_eval_gap(merge.recompute_batch_stats(RESNET, merged, X_IMG), X_IMG)
  # one batch of all of x: eval mode = train mode but for the unbiased variance (N/(N-1))
  assert after < 1e-2 and before > 30 * after, (before, after)
  mlp = nets.MLP(hidden=(4,), num_classes=3)
  vm = random_variables(mlp, X_IMG, 0)
  assert merge.recompute_batch_stats(mlp, vm, X_IMG) is vm


def test_feature_average_endpoints_and_identical_specialists(parents):
  vs = parents
  for alpha, k in ((1.0, 0), (0.0, 1)):
    got = merge.feature_average(RESNET, vs, X_IMG, alpha)
    # to rounding: eager apply and the jitted mixture fuse the BatchNorms differently
    np.testing.assert_allclose(got, RESNET.apply(vs[k], X_IMG), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(merge.feature_average(RESNET, vs, X_IMG, alpha, batch_size=7),
                               got, rtol=1e-6, atol=1e-6)
  same = [vs[0]] * 3
  alpha_LK = np.random.default_rng(0).dirichlet(np.ones(3), size=len(RESNET.tap_names()))
  np.testing.assert_allclose(merge.feature_average(RESNET, same, X_IMG, alpha_LK),
                             RESNET.apply(vs[0], X_IMG), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(merge.feature_average(RESNET, same, X_IMG, [0.2, 0.3, 0.5]),
                             RESNET.apply(vs[0], X_IMG), rtol=1e-5, atol=1e-5)


def test_feature_average_mlp_by_hand_and_errors():
  net = nets.MLP(hidden=(3,), num_classes=2)
  x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
  vs = [random_variables(net, x, s) for s in (3, 4)]
  p = [jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"]) for v in vs]
  alpha = np.array([[0.7, 0.6], [-0.5, 1.25]])  # per stage, not convex
  relu = lambda z: np.maximum(z, 0)
  h = sum(alpha[0, k] * relu(x @ p[k]["fc1"]["kernel"] + p[k]["fc1"]["bias"]) for k in (0, 1))
  want = sum(alpha[1, k] * (h @ p[k]["head"]["kernel"] + p[k]["head"]["bias"]) for k in (0, 1))
  np.testing.assert_allclose(merge.feature_average(net, vs, x, alpha), want, rtol=1e-5,
                             atol=1e-6)
  with pytest.raises(ValueError, match=r"shape \(3,\).*\[K\] = \[2\].*\[L, K\] = \[2, 2\]"):
    merge.feature_average(net, vs, x, [0.2, 0.3, 0.5])
  with pytest.raises(ValueError, match=r"shape \(\).*\[K\] = \[3\]"):
    merge.feature_average(net, vs + vs[:1], x, 0.5)  # a float mixes only K = 2
  other = random_variables(nets.MLP(hidden=(5,), num_classes=2), x, 0)
  with pytest.raises(ValueError, match="fc1.*shape"):
    merge.feature_average(net, [vs[0], other], x, 0.5)


def test_feature_average_sweep_table():
  net = nets.MLP(hidden=(3,), num_classes=2)
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(30, 4)).astype(np.float32), rng.integers(0, 2, 30)
  vs = [random_variables(net, x, s) for s in (5, 6)]
  df = merge.feature_average_sweep(net, vs, x, y, np.linspace(0, 1, 11))
  assert list(df.columns) == ["alpha", "accuracy", "loss"] and len(df) == 11
  for alpha, k in ((1.0, 0), (0.0, 1)):
    logits = np.asarray(net.apply(vs[k], x), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    row = df[np.isclose(df.alpha, alpha)].iloc[0]
    assert row.accuracy == np.mean(logits.argmax(-1) == y)
    np.testing.assert_allclose(row.loss, -logp[np.arange(30), y].mean(), rtol=1e-5)


def test_expert_lists_follow_the_depth_rule():
  r22 = nets.resnet_from_name("R22", widths=(4, 8), num_classes=3, conv_lowering="xla")
  both = lambda *taps: [(k, t) for k in (0, 1) for t in taps]
  assert routing.routing_experts(r22, X_IMG, 2, depths=2) == {
      "stem": both("stem"), "block1": both("block1", "block2"), "block2": both("block2"),
      "block3": both("block3"), "block4": both("block4"), "logits": both("logits")}
  mlp = nets.MLP(hidden=(6, 6, 6), num_classes=3)
  assert routing.routing_experts(mlp, X_IMG, 2, depths=2) == {
      "fc1": both("fc1"), "fc2": both("fc2", "fc3"), "fc3": both("fc3"),
      "logits": both("logits")}
  assert routing.routing_experts(mlp, X_IMG, 2, depths=3)["fc3"] == both("fc3", "fc2")
  gates = routing.init_gates(r22, X_IMG, 2, depths=2)
  assert {t: g["kernel"].shape for t, g in gates.items()} == {
      "stem": (1, 2), "block1": (4, 4), "block2": (4, 2), "block3": (4, 2), "block4": (8, 2),
      "logits": (8, 2)}
  with pytest.raises(ValueError, match="depths=0"):
    routing.routing_experts(mlp, X_IMG, 2, depths=0)


def test_zero_gates_are_the_uniform_mixture(parents):
  gates = routing.init_gates(RESNET, X_IMG, 2)
  np.testing.assert_allclose(merge.routed_logits(RESNET, parents, gates, X_IMG),
                             merge.feature_average(RESNET, parents, X_IMG, 0.5), rtol=1e-6,
                             atol=1e-6)
  # depths=2 on equal widths: fc2's mixture holds both specialists' fc2 and fc3
  mlp = nets.MLP(hidden=(6, 6, 6), num_classes=3)
  x = X_IMG[:6].reshape(6, -1)
  vm = [random_variables(mlp, x, s) for s in (3, 4)]
  p = [jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"]) for v in vm]
  dense = lambda h, q: h @ q["kernel"] + q["bias"]
  relu = lambda z: np.maximum(z, 0)
  h = np.mean([relu(dense(x, q["fc1"])) for q in p], 0)
  h = np.mean([relu(dense(h, q[t])) for q in p for t in ("fc2", "fc3")], 0)
  h = np.mean([relu(dense(h, q["fc3"])) for q in p], 0)
  want = np.mean([dense(h, q["head"]) for q in p], 0)
  got = merge.routed_logits(mlp, vm, routing.init_gates(mlp, x, 2, depths=2), x, depths=2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


ADAM = optax.adam(1e-2)


@functools.partial(jax.jit, static_argnums=0)
def adam_step(net, v, state, x, y, keep):
  """Full-batch Adam on the examples with `keep` (the same shapes for every subset)."""
  g = jax.grad(lambda v: (keep * optax.softmax_cross_entropy_with_integer_labels(
      net.apply(v, x), y)).sum() / keep.sum())(v)
  up, state = ADAM.update(g, state)
  return optax.apply_updates(v, up), state


def train_on_classes(net, x, y, classes, seed):
  """A specialist: trained on the examples of `classes` only."""
  v = random_variables(net, x, seed)
  state, keep = ADAM.init(v), jnp.asarray(np.isin(y, classes), jnp.float32)
  for _ in range(150):
    v, state = adam_step(net, v, state, x, y, keep)
  return v


def test_router_beats_specialists_and_feature_average():
  ds = data.load("digits")
  x, xt = ds.x_train.reshape(len(ds.x_train), -1), ds.x_test.reshape(len(ds.x_test), -1)
  net = nets.MLP(hidden=(32,), num_classes=10)
  vs = [train_on_classes(net, x, ds.y_train, c, s) for s, c in ((0, range(5)), (1, range(5, 10)))]
  before = copy.deepcopy(leaves(vs))
  acc = lambda logits: float(np.mean(np.argmax(logits, -1) == ds.y_test))
  baselines = [acc(net.apply(v, xt)) for v in vs] + [acc(merge.feature_average(net, vs, xt, 0.5))]
  assert max(baselines) < 0.65, baselines  # each specialist knows half the classes
  res = merge.train_router(net, vs, x, ds.y_train, x_test=xt, y_test=ds.y_test, seeds=(0, 1),
                           epochs=10)
  assert res["experts"] == {"fc1": [(0, "fc1"), (1, "fc1")],
                            "logits": [(0, "logits"), (1, "logits")]}
  assert {t: g["kernel"].shape for t, g in res["params"].items()} == {
      "fc1": (2, 64, 2), "logits": (2, 32, 2)}
  assert np.all(res["test_acc_M"] > max(baselines) + 0.15), (res["test_acc_M"], baselines)
  assert np.all(np.isfinite(res["final_loss_M"]))
  after = leaves(vs)
  assert all(np.array_equal(before[k], after[k]) for k in before)
  gates0 = jax.tree.map(lambda a: a[0], res["params"])
  np.testing.assert_allclose(acc(merge.routed_logits(net, vs, gates0, xt)),
                             res["test_acc_M"][0], atol=1e-6)
  with pytest.raises(ValueError, match=r"fc1: kernel shape \(2, 64, 2\).*no member axis"):
    merge.routed_logits(net, vs, res["params"], xt)
