"""permutation_spec / random_permutation / permute on every net.

Random relabellings (with the signs and scales the spec allows) keep the logits,
change the variables, and differ between keys; the transforms the spec forbids
(signs behind relu, scales behind tanh, signs behind max pool) change the logits;
the groups of LeNet5, CNN1D and a two-stage ResNet match a hand-written listing;
`permute` matches an explicit NumPy loop.
"""
import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from flax.core import FrozenDict, freeze

from jatlas import nets
from jatlas.nets import stages
from test_nets_common import CASES, random_variables

TOL = dict(atol=1e-5, rtol=1e-5)

SYM_CASES = {
    "mlp_relu": (nets.MLP(hidden=(8, 6), num_classes=3), (2, 4, 4, 1)),
    "mlp_tanh": (nets.MLP(hidden=(8, 6), num_classes=3, activation="tanh"), (2, 4, 4, 1)),
    "small_cnn": CASES["small_cnn"],
    # 36x36: conv3 is 3x3, so fc1 reads 9 blocks of conv3's units
    "lenet5_tanh": (nets.LeNet5(channels=(4, 5, 6), hidden=7), (2, 36, 36, 1)),
    "lenet5_relu": (nets.LeNet5(channels=(4, 5, 6), hidden=7, activation="relu"),
                    (2, 36, 36, 1)),
    "resnet": CASES["resnet"],  # stages of 1 and 2 blocks, block2 projects
    "cnn1d": CASES["cnn1d"],
}
ODD = {"mlp_tanh", "lenet5_tanh"}  # the rest are relu nets


@pytest.fixture(scope="module", params=sorted(SYM_CASES))
def case(request):
  net, x_shape = SYM_CASES[request.param]
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  variables = random_variables(net, x)
  apply = jax.jit(net.apply)  # one compilation serves all the variables of a case
  return request.param, apply, x, variables, nets.permutation_spec(net, variables)


def flat(variables):
  return traverse_util.flatten_dict(variables, sep="/")


def max_change(a, b):
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def transform(spec, name, sign=1.0, scale=1.0):
  """Identity permutation of group `name` with one sign and scale for all its units."""
  size = spec.groups[name].size
  return {name: nets.GroupPerm(jnp.arange(size), jnp.full(size, sign), jnp.full(size, scale))}


def test_spec_flags_follow_the_activation(case):
  name, _, _, _, spec = case
  assert spec.groups
  for group in spec.groups.values():
    assert (group.flip, group.rescale) == ((True, False) if name in ODD else (False, True))


def test_random_relabelling_keeps_logits_and_changes_variables(case):
  _, apply, x, variables, spec = case
  logits_NK = apply(variables, x)
  perms = nets.random_permutation(spec, jax.random.key(0))
  permuted = nets.permute(variables, spec, perms)
  np.testing.assert_allclose(apply(permuted, x), logits_NK, **TOL)
  before, after = flat(variables), flat(permuted)
  assert sorted(after) == sorted(before)
  for group in spec.groups.values():  # every group moved its tensors
    assert any(np.any(before[a.tensor] != after[a.tensor]) for a in group.axes), group.name
  other = nets.permute(variables, spec, nets.random_permutation(spec, jax.random.key(1)))
  np.testing.assert_allclose(apply(other, x), logits_NK, **TOL)
  assert max_change(flat(other), after) > 1e-3


def test_draws_use_the_allowed_symmetries(case):
  name, _, _, _, spec = case
  perms = nets.random_permutation(spec, jax.random.key(0))
  for group, t in ((spec.groups[n], perms[n]) for n in spec.groups):
    assert sorted(np.asarray(t.perm).tolist()) == list(range(group.size))
    signs, scales = np.asarray(t.sign), np.asarray(t.scale)
    assert set(signs.tolist()) <= {-1.0, 1.0}
    assert np.any(signs < 0) == group.flip or group.size < 4
    assert np.all((scales >= 0.5) & (scales <= 2.0))
    assert np.any(scales != 1.0) == group.rescale
  plain = nets.random_permutation(spec, jax.random.key(0), flip=False, rescale=False)
  for t in plain.values():
    assert np.all(np.asarray(t.sign) == 1) and np.all(np.asarray(t.scale) == 1)


def test_forbidden_transforms_change_the_logits(case):
  """Flip signs in relu nets, rescale in tanh nets: the spec's restrictions are real."""
  name, apply, x, variables, spec = case
  logits_NK = apply(variables, x)
  for group in spec.groups:
    forbidden = (transform(spec, group, scale=2.0) if name in ODD
                 else transform(spec, group, sign=-1.0))
    allowed = (transform(spec, group, sign=-1.0) if name in ODD
               else transform(spec, group, scale=2.0))
    changed = apply(nets.permute(variables, spec, forbidden), x)
    assert np.max(np.abs(changed - logits_NK)) > 1e-3, group
    kept = apply(nets.permute(variables, spec, allowed), x)
    np.testing.assert_allclose(kept, logits_NK, **TOL, err_msg=group)


def test_resnet_train_mode_keeps_logits_and_permutes_batch_stats():
  net, x_shape = SYM_CASES["resnet"]
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  variables = random_variables(net, x)
  spec = nets.permutation_spec(net, variables)
  perms = nets.random_permutation(spec, jax.random.key(3))
  permuted = nets.permute(variables, spec, perms)
  apply = functools.partial(net.apply, train=True, mutable=["batch_stats"])
  logits_NK, updates = apply(variables, x)
  logits2_NK, updates2 = apply(permuted, x)
  np.testing.assert_allclose(logits2_NK, logits_NK, **TOL)
  assert np.max(np.abs(logits_NK - net.apply(variables, x))) > 1e-3  # train mode differs
  want = nets.permute({**variables, "batch_stats": updates["batch_stats"]}, spec, perms)
  chex.assert_trees_all_close(updates2["batch_stats"], want["batch_stats"], **TOL)


@pytest.mark.parametrize("activation, flip, rescale", [
    ("relu", False, True), ("leaky_relu", False, True), ("tanh", True, False),
    ("identity", True, True), ("sigmoid", False, False), ("gelu", False, False)])
def test_mlp_activation_symmetries(activation, flip, rescale):
  net = nets.MLP(hidden=(5, 4), num_classes=3, activation=activation)
  x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
  variables = random_variables(net, x)
  spec = nets.permutation_spec(net, variables)
  assert [(g.name, g.size, g.flip, g.rescale) for g in spec.groups.values()] == [
      ("fc1", 5, flip, rescale), ("fc2", 4, flip, rescale)]
  permuted = nets.permute(variables, spec, nets.random_permutation(spec, jax.random.key(0)))
  np.testing.assert_allclose(net.apply(permuted, x), net.apply(variables, x), **TOL)


class PoolNet(stages.StagedNet):
  """A net declared only here: conv, activation, pool, flatten, Dense head."""
  pool: str = "max"
  activation: str = "identity"

  def stages(self):
    pool = stages.MaxPool(2) if self.pool == "max" else stages.AvgPool(2)
    conv = functools.partial(nn.Conv, 3, (3, 3), padding="SAME")
    head = functools.partial(nn.Dense, 2)
    return (stages.Stage("conv", (stages.Linear("conv", conv), stages.Act(self.activation))),
            stages.Stage("pool", (pool,)),
            stages.Stage("logits", (stages.Flatten(), stages.Linear("head", head))))


@pytest.mark.parametrize("pool, flip", [("max", False), ("avg", True)])
def test_pooling_keeps_scales_and_only_avg_keeps_signs(pool, flip):
  net = PoolNet(pool=pool)
  x = np.random.default_rng(1).normal(size=(2, 4, 6, 2)).astype(np.float32)
  variables = random_variables(net, x)
  spec = nets.permutation_spec(net, variables)
  (group,) = spec.groups.values()
  assert (group.name, group.size, group.flip, group.rescale) == ("conv", 3, flip, True)
  assert group.axes[-1] == nets.Axis("params/head/kernel", 0, "in", blocks=6)
  logits_NK = net.apply(variables, x)
  permuted = nets.permute(variables, spec, nets.random_permutation(spec, jax.random.key(0)))
  np.testing.assert_allclose(net.apply(permuted, x), logits_NK, **TOL)
  flipped = net.apply(nets.permute(variables, spec, transform(spec, "conv", sign=-1.0)), x)
  assert (np.max(np.abs(flipped - logits_NK)) < 1e-5) == flip


def _axes(spec):
  return {name: {(a.tensor, a.axis, a.role, a.blocks) for a in g.axes}
          for name, g in spec.groups.items()}


def _shapes(net, x_shape):
  return jax.eval_shape(net.init, jax.random.key(0), jax.ShapeDtypeStruct(x_shape, np.float32))


def test_lenet5_groups_by_hand():
  net = nets.LeNet5(num_classes=1)  # the paper's net: conv3's map is 2x2 on 32x32 inputs
  spec = nets.permutation_spec(net, _shapes(net, (1, 32, 32, 3)))
  assert [(g.name, g.size, g.flip, g.rescale) for g in spec.groups.values()] == [
      ("conv1", 6, True, False), ("conv2", 16, True, False), ("conv3", 120, True, False),
      ("fc1", 84, True, False)]

  def made_read(layer, reader, blocks=1):
    return {(f"params/{layer}/kernel", 3 if layer.startswith("conv") else 1, "out", 1),
            (f"params/{layer}/bias", 0, "out", 1),
            (f"params/{reader}/kernel", 2 if reader.startswith("conv") else 0, "in", blocks)}

  assert _axes(spec) == {"conv1": made_read("conv1", "conv2"),
                         "conv2": made_read("conv2", "conv3"),
                         "conv3": made_read("conv3", "fc1", blocks=4),
                         "fc1": made_read("fc1", "head")}


def test_cnn1d_head_reads_blocks_of_positions():
  spec = nets.permutation_spec(nets.CNN1D(), _shapes(nets.CNN1D(), (1, 1, 40, 1)))
  assert list(spec.groups) == ["conv1", "conv2", "conv3"]
  # conv3's map is (1, 5, 25): head rows are s*25 + c
  assert ("params/head/kernel", 0, "in", 5) in _axes(spec)["conv3"]


def test_resnet_groups_by_hand():
  net = nets.ResNet(stage_blocks=(1, 1), widths=(4, 8), num_classes=3)
  spec = nets.permutation_spec(net, _shapes(net, (1, 8, 8, 2)))

  def bn(path):
    return {(f"params/{path}/scale", 0, "out", 1), (f"params/{path}/bias", 0, "out", 1),
            (f"batch_stats/{path}/mean", 0, "perm", 1), (f"batch_stats/{path}/var", 0, "perm", 1)}

  def kernel(path, role):
    return {(f"params/{path}/kernel", 3 if role == "perm" else 2, role, 1)}

  assert _axes(spec) == {
      "stem": kernel("stem_conv", "perm") | bn("stem_bn") | kernel("block1/conv1", "in")
              | kernel("block1/conv2", "perm") | bn("block1/bn2")
              | kernel("block2/conv1", "in") | kernel("block2/proj_conv", "in"),
      "block1/conv1": kernel("block1/conv1", "perm") | bn("block1/bn1")
                      | kernel("block1/conv2", "in"),
      "block2/conv1": kernel("block2/conv1", "perm") | bn("block2/bn1")
                      | kernel("block2/conv2", "in"),
      "block2": kernel("block2/conv2", "perm") | bn("block2/bn2")
                | kernel("block2/proj_conv", "perm") | bn("block2/proj_bn")
                | {("params/head/kernel", 0, "in", 1)},
  }
  assert [(g.size, g.flip, g.rescale) for g in spec.groups.values()] == [
      (4, False, True), (4, False, True), (8, False, True), (8, False, True)]


def test_permute_matches_an_explicit_loop():
  size, blocks = 3, 2
  spec = nets.PermutationSpec("hand", {"g": nets.Group("g", size, (
      nets.Axis("params/a/kernel", 1, "out"), nets.Axis("params/b/kernel", 0, "in", blocks),
      nets.Axis("batch_stats/c/mean", 0, "perm")), flip=True, rescale=True)})
  rng = np.random.default_rng(0)
  a, b, c = rng.normal(size=(4, size)), rng.normal(size=(blocks * size, 5)), rng.normal(size=size)
  perm, sign, scale = np.array([2, 0, 1]), np.array([1.0, -1.0, 1.0]), np.array([0.5, 2.0, 1.5])
  out = nets.permute({"params": {"a": {"kernel": a}, "b": {"kernel": b}},
                      "batch_stats": {"c": {"mean": c}}}, spec,
                     {"g": nets.GroupPerm(perm, sign, scale)})
  want_a, want_b, want_c = np.empty_like(a), np.empty_like(b), np.empty_like(c)
  for u in range(size):
    want_a[:, u] = sign[u] * scale[u] * a[:, perm[u]]
    want_c[u] = c[perm[u]]
    for s in range(blocks):
      want_b[s * size + u] = b[s * size + perm[u]] / (sign[u] * scale[u])
  assert isinstance(out["params"]["a"]["kernel"], np.ndarray)  # NumPy in, NumPy out
  np.testing.assert_allclose(out["params"]["a"]["kernel"], want_a)
  np.testing.assert_allclose(out["params"]["b"]["kernel"], want_b)
  np.testing.assert_allclose(out["batch_stats"]["c"]["mean"], want_c)
  bare = nets.permute({"params": {"a": {"kernel": a}, "b": {"kernel": b}},
                       "batch_stats": {"c": {"mean": c}}}, spec, {"g": perm})
  np.testing.assert_allclose(bare["params"]["a"]["kernel"], a[:, perm])


def test_permute_under_jit_vmap_and_frozen_dicts():
  net, x_shape = SYM_CASES["cnn1d"]
  net = net.clone(conv_lowering="xla")  # compiles faster under vmap than the member loop
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  variables = random_variables(net, x)
  spec = nets.permutation_spec(net, variables)
  perms = nets.random_permutation(spec, jax.random.key(0))
  eager = nets.permute(variables, spec, perms)

  @jax.jit
  def permuted_logits(v, key):
    return net.apply(nets.permute(v, spec, nets.random_permutation(spec, key)), x)

  np.testing.assert_allclose(permuted_logits(variables, jax.random.key(0)),
                             net.apply(eager, x), **TOL)
  jitted = jax.jit(nets.permute, static_argnums=1)(variables, spec, perms)
  chex.assert_trees_all_close(jitted, eager, **TOL)
  frozen = nets.permute(freeze(variables), spec, perms)
  assert isinstance(frozen, FrozenDict)
  chex.assert_trees_all_close(frozen.unfreeze(), eager, **TOL)
  members = random_variables(net, x, seed=5, members=2)
  keys = jax.random.split(jax.random.key(0), 2)
  logits_MNK = jax.vmap(permuted_logits)(members, keys)
  for m in range(2):
    member = jax.tree.map(lambda a: a[m], members)
    np.testing.assert_allclose(logits_MNK[m], net.apply(member, x), **TOL)


def test_spec_repr_is_one_line_per_group():
  spec = nets.permutation_spec(nets.LeNet5(), _shapes(nets.LeNet5(), (1, 36, 36, 3)))
  assert repr(spec).splitlines() == [
      "PermutationSpec(LeNet5, 4 groups:",
      "  conv1: 6 units; flip; made by conv1; read by conv2",
      "  conv2: 16 units; flip; made by conv2; read by conv3",
      "  conv3: 120 units; flip; made by conv3; read by fc1 (x9 blocks)",
      "  fc1: 84 units; flip; made by fc1; read by head)"]
  assert "params/fc1/kernel[0] x9 in" in spec.summary()
  assert hash(spec) == hash(nets.permutation_spec(nets.LeNet5(),
                                                  _shapes(nets.LeNet5(), (1, 36, 36, 3))))


def test_errors_name_the_problem():
  net, x_shape = SYM_CASES["resnet"]
  variables = random_variables(net, np.zeros(x_shape, np.float32))
  spec = nets.permutation_spec(net, variables)
  with pytest.raises(ValueError, match=r"batch_stats/stem_bn/mean is missing"):
    nets.permutation_spec(net, {"params": variables["params"]})
  with pytest.raises(ValueError, match=r"params/block4/conv1/kernel is missing \(did you "
                     r"mean 'params/block3/conv1/kernel'\?\)"):
    nets.permutation_spec(net.clone(stage_blocks=(1, 3)), variables)
  with pytest.raises(ValueError, match=r"no group 'stems' \(did you mean 'stem'\?\)"):
    nets.permute(variables, spec, {"stems": np.arange(4)})
  with pytest.raises(ValueError, match=r"group 'stem' has 4 units.*\[\(3,\)\]"):
    nets.permute(variables, spec, {"stem": np.arange(3)})
  with pytest.raises(ValueError, match=r"batch_stats/stem_bn/mean is missing"):
    nets.permute({"params": variables["params"]}, spec, {"stem": np.arange(4)})
  with pytest.raises(TypeError, match="StagedNet"):
    nets.permutation_spec(nn.Dense(3), {})
