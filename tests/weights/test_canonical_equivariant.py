"""Canonical unit order and the permutation-invariant encoder, on jatlas nets' specs.

Variables are random NumPy arrays of the nets' shapes (jax.eval_shape of init), so
no net is compiled; the symmetry transforms come from jatlas.nets.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jatlas import nets
from jatlas.flat_names import flatten_variables
from jatlas.weights.canonical import canonicalise, unit_axes
from jatlas.weights.equivariant import EquivariantEncoder, prepare, split_by_units

LENET = (nets.LeNet5(num_classes=1), (1, 32, 32, 1))
MLP = (nets.MLP(hidden=(12, 7), num_classes=3), (1, 4, 4, 1))
RESNET = (nets.ResNet(stage_blocks=(1, 2), widths=(4, 6), num_classes=3), (1, 8, 8, 3))
RESNET_SMALL = (nets.ResNet(stage_blocks=(1, 1), widths=(3, 4), num_classes=2), (1, 8, 8, 3))


def random_variables(net_and_shape, n_models: int, seed: int):
  """(spec, [n_models] variable dicts of NumPy float32, drawn N(0, 0.3^2))."""
  net, shape = net_and_shape
  shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros(shape))
  rng = np.random.default_rng(seed)
  models = [jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32),
                         shapes) for _ in range(n_models)]
  return nets.permutation_spec(net, shapes), models


def stack(models) -> dict:
  flat = [flatten_variables(m) for m in models]
  return {k: np.stack([np.asarray(f[k]) for f in flat]) for k in flat[0]}


def transformed(models, spec, seed: int, flip: bool = True, rescale: bool = True,
                jax_draw: bool = False):
  """Each model under its own random symmetry transform: permutations, signs where
  the group flips, scales in [0.5, 2] where it rescales. jax_draw: drawn by
  nets.random_permutation (compiled per spec), else in NumPy."""
  rng, out = np.random.default_rng(seed), []
  for i, m in enumerate(models):
    if jax_draw:
      perms = jax.tree.map(np.asarray, nets.random_permutation(
          spec, jax.random.key(seed + i), flip=flip, rescale=rescale))
    else:
      perms = {g: nets.GroupPerm(
          rng.permutation(grp.size),
          rng.choice([-1.0, 1.0], grp.size) if flip and grp.flip else np.ones(grp.size),
          np.exp(rng.uniform(np.log(0.5), np.log(2), grp.size)) if rescale and grp.rescale
          else np.ones(grp.size)) for g, grp in spec.groups.items()}
    out.append(nets.permute(m, spec, perms))
  return out


def assert_same(a: dict, b: dict, atol=1e-6):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0, err_msg=k)


def max_diff(a: dict, b: dict) -> float:
  return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ------------------------------------------------------------------ canonicalise

def test_lenet5_tanh_permuted_and_flipped_copies_become_identical():
  spec, models = random_variables(LENET, 3, seed=0)
  assert all(g.flip for g in spec.groups.values())
  moved = transformed(models, spec, seed=10)
  assert max_diff(stack(models), stack(moved)) > 0.1
  a, b = canonicalise(stack(models), spec), canonicalise(stack(moved), spec)
  assert_same(a, b)
  assert_same(canonicalise(a, spec), a)  # idempotent
  # without sign canonicalisation flipped copies stay apart: the check can fail
  assert max_diff(canonicalise(stack(models), spec, flip=False),
                  canonicalise(stack(moved), spec, flip=False)) > 0.1


def test_canonical_form_is_a_symmetry_transform_of_each_model():
  spec, models = random_variables(LENET, 2, seed=1)
  canon, perms = canonicalise(stack(models), spec, return_perms=True)
  for r, m in enumerate(models):
    perms_r = {g: nets.GroupPerm(*(np.asarray(a[r]) for a in gp)) for g, gp in perms.items()}
    assert_same(flatten_variables(nets.permute(m, spec, perms_r)),
                {k: v[r] for k, v in canon.items()})
  # sign rule: every unit's incoming entries ("out" axes) sum to >= 0
  for g, group in spec.groups.items():
    total = sum(np.moveaxis(canon[ax.tensor], ax.axis + 1, -1).reshape(2, -1, group.size)
                .sum(1) for ax in group.axes if ax.role == "out")
    assert (total >= 0).all(), g


def test_mlp_and_resnet_permuted_copies_become_identical_and_order_is_by_norm():
  for net_and_shape in (MLP, RESNET):
    spec, models = random_variables(net_and_shape, 3, seed=2)
    moved = transformed(models, spec, seed=20, rescale=False)
    a = canonicalise(stack(models), spec)
    assert_same(a, canonicalise(stack(moved), spec))
  kernel = a["params/stem_conv/kernel"]  # the ResNet stem's units: decreasing norm
  norms = np.sqrt((kernel ** 2).sum((1, 2, 3)) + a["params/stem_bn/scale"] ** 2
                  + a["params/stem_bn/bias"] ** 2
                  + (a["params/block1/conv2/kernel"] ** 2).sum((1, 2, 3))
                  + a["params/block1/bn2/scale"] ** 2 + a["params/block1/bn2/bias"] ** 2
                  + a["batch_stats/stem_bn/mean"] ** 2 + a["batch_stats/stem_bn/var"] ** 2
                  + a["batch_stats/block1/bn2/mean"] ** 2
                  + a["batch_stats/block1/bn2/var"] ** 2)
  assert (np.diff(norms, axis=1) <= 1e-6).all()


def test_rescale_canonicalises_positive_scales_of_relu_nets():
  for net_and_shape in (MLP, RESNET):
    spec, models = random_variables(net_and_shape, 2, seed=3)
    moved = transformed(models, spec, seed=30)  # permutations and scales in [0.5, 2]
    assert max_diff(canonicalise(stack(models), spec),
                    canonicalise(stack(moved), spec)) > 0.01
    assert_same(canonicalise(stack(models), spec, rescale=True),
                canonicalise(stack(moved), spec, rescale=True), atol=1e-5)


def test_tensors_outside_the_spec_pass_through_and_errors_name_the_tensor():
  spec, models = random_variables(MLP, 2, seed=4)
  tensors = stack(models)
  out = canonicalise(tensors, spec)
  np.testing.assert_array_equal(out["params/head/bias"], tensors["params/head/bias"])
  assert "params/head/bias" not in unit_axes(spec)
  with pytest.raises(ValueError, match="params/fc2/kernel is missing"):
    canonicalise({k: v for k, v in tensors.items() if k != "params/fc2/kernel"}, spec)
  bad = dict(tensors, **{"params/fc1/bias": tensors["params/fc1/bias"][:, :5]})
  with pytest.raises(ValueError, match=r"params/fc1/bias has shape \(2, 5\).*12 entries"):
    canonicalise(bad, spec)


# ------------------------------------------------------------------ encoder

ENCODER = dict(out_dim=4, hidden=8, edge_hidden=4, head_hidden=(8,))


@functools.lru_cache(maxsize=None)
def encoder_fn(spec, **options):
  """(module, outputs(params, xs) -> one output per batch in the list xs); the
  batches are applied as one (one compile per spec, options and total batch)."""
  enc = EquivariantEncoder(spec, **ENCODER, **options)
  apply = jax.jit(lambda params, x: enc.apply({"params": params}, x))

  def outputs(params, xs):
    y = np.asarray(apply(params, {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}))
    return np.split(y, len(xs))
  return enc, outputs


def random_params(enc, x, seed: int = 0):
  """Params of enc's shapes drawn in NumPy (compiling Flax's init costs seconds)."""
  shapes = jax.eval_shape(enc.init, jax.random.key(0), x)["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (rng.standard_normal(s.shape) / np.sqrt(
      s.shape[0] if len(s.shape) == 2 else 10)).astype(np.float32), shapes)


def test_split_by_units_reads_lenet5_as_nodes_edges_and_invariants():
  spec, models = random_variables(LENET, 2, seed=5)
  nodes, edges, invariant = split_by_units(stack(models), spec)
  assert [(n, a, b, x.shape) for n, a, b, x in edges] == [
      ("params/conv2/kernel", "conv1", "conv2", (2, 6, 16, 25)),
      ("params/conv3/kernel", "conv2", "conv3", (2, 16, 120, 25)),
      ("params/fc1/kernel", "conv3", "fc1", (2, 120, 84, 4))]
  assert {g: [(n, x.shape) for n, x in parts] for g, parts in nodes.items()} == {
      "conv1": [("params/conv1/bias", (2, 6, 1)), ("params/conv1/kernel", (2, 6, 25))],
      "conv2": [("params/conv2/bias", (2, 16, 1))],
      "conv3": [("params/conv3/bias", (2, 120, 1))],
      "fc1": [("params/fc1/bias", (2, 84, 1)), ("params/head/kernel", (2, 84, 1))]}
  assert [(n, x.shape) for n, x in invariant] == [("params/head/bias", (2, 1))]
  fc1 = stack(models)["params/fc1/kernel"]  # entry (b * 120 + u, j) is block b of unit u
  np.testing.assert_array_equal(edges[2][3][1, 7, 3], fc1[1, [7, 127, 247, 367], 3])


@pytest.mark.parametrize("net_and_shape, read, first", [
    (LENET, "params/conv2/kernel", "params/conv1/kernel"),
    (MLP, "params/fc2/kernel", "params/fc1/kernel"),
    (RESNET_SMALL, "params/block2/conv1/kernel", "params/stem_conv/kernel")],
    ids=["lenet5", "mlp", "resnet"])
def test_encoder_is_permutation_invariant_and_sees_non_symmetries(net_and_shape, read, first):
  spec, models = random_variables(net_and_shape, 3, seed=6)
  x = stack(models)
  moved = stack(transformed(models, spec, seed=60, flip=False, rescale=False,
                            jax_draw=True))
  # reordering only the input rows of `read` (not the units making them) is no
  # symmetry, nor is reordering a fixed axis (the first kernel's inputs or taps)
  broken = dict(x, **{read: np.flip(x[read], axis=-2)})
  broken_fixed = dict(x, **{first: np.flip(x[first], axis=1)})
  enc, outputs = encoder_fn(spec)
  y, y_moved, y_broken, y_fixed = outputs(random_params(enc, x),
                                          [x, moved, broken, broken_fixed])
  assert y.shape == (3, 4) and np.isfinite(y).all()
  np.testing.assert_allclose(y_moved, y, atol=1e-5, rtol=0)
  assert np.abs(y_broken - y).max() > 1e-3 and np.abs(y_fixed - y).max() > 1e-3


def test_encoder_init_is_deterministic_in_its_key_and_invariant():
  spec, models = random_variables(MLP, 2, seed=8)
  x = stack(models)
  moved = stack(transformed(models, spec, seed=80, rescale=False))
  enc = EquivariantEncoder(spec, **ENCODER)
  init = jax.jit(lambda key: enc.init(key, x)["params"])
  params, again, other = init(jax.random.key(0)), init(jax.random.key(0)), init(
      jax.random.key(1))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params),
                                                  jax.tree.leaves(again)))
  assert not np.array_equal(jax.tree.leaves(params)[0], jax.tree.leaves(other)[0])
  y, y_moved = encoder_fn(spec)[1](params, [x, moved])
  np.testing.assert_allclose(y_moved, y, atol=1e-5, rtol=0)


def test_prepare_then_encoder_is_also_flip_invariant_for_tanh_lenet5():
  spec, models = random_variables(LENET, 3, seed=7)
  x, scales = prepare(stack(models), spec)
  assert all(abs(np.sqrt(np.mean(v.astype(np.float64) ** 2)) - 1) < 1e-4
             for v in x.values())
  flipped = stack(transformed(models, spec, seed=70))
  moved, _ = prepare(flipped, spec, scales=scales)
  # without prepare's sign canonicalisation the flips change the output
  raw = {k: v / scales[k] for k, v in stack(models).items()}
  raw_moved = {k: v / scales[k] for k, v in flipped.items()}
  enc, outputs = encoder_fn(spec)
  y, y_moved, y_raw, y_raw_moved = outputs(random_params(enc, x), [x, moved, raw, raw_moved])
  np.testing.assert_allclose(y_moved, y, atol=1e-5, rtol=0)
  assert np.abs(y_raw_moved - y_raw).max() > 1e-3
  with pytest.raises(ValueError, match="no scale for tensors"):
    prepare(stack(models), spec, scales={"params/conv1/kernel": 1.0})


@pytest.mark.parametrize("net_and_shape, options", [
    (LENET, dict(sign_symmetric=True)),
    (MLP, dict(messages="mlp", sequential=False, depth=2))], ids=["lenet5-sign", "mlp-mlp"])
def test_other_modes_are_invariant_and_sign_symmetric_needs_no_canonicalisation(
    net_and_shape, options):
  spec, models = random_variables(net_and_shape, 3, seed=9)
  x = stack(models)
  moved = stack(transformed(models, spec, seed=90, rescale=False))  # flips where allowed
  name = "params/fc2/kernel" if "params/fc2/kernel" in x else "params/conv2/kernel"
  broken = dict(x, **{name: np.flip(x[name], axis=-2)})
  enc, outputs = encoder_fn(spec, **options)
  y, y_moved, y_broken = outputs(random_params(enc, x), [x, moved, broken])
  np.testing.assert_allclose(y_moved, y, atol=1e-5, rtol=0)
  assert np.abs(y_broken - y).max() > 1e-3
  with pytest.raises(ValueError, match="messages='dot'"):
    EquivariantEncoder(spec, out_dim=2, messages="dot").init(jax.random.key(0), x)


@pytest.mark.parametrize("to_dst", [True, False], ids=["into-b", "into-a"])
def test_bilinear_message_equals_the_materialised_product_mean(to_dst):
  # the formula of the module docstring, [B, U_a, U_b, E] formed in NumPy
  from jatlas.weights.equivariant import _bilinear_mean
  rng = np.random.default_rng(11)
  x_BabC = rng.standard_normal((3, 5, 7, 4)).astype(np.float32)
  h_BsE = rng.standard_normal((3, 5 if to_dst else 7, 6)).astype(np.float32)
  kernel_CE = rng.standard_normal((4, 6)).astype(np.float32)
  z_BabE = np.einsum("bijc,ce->bije", x_BabC, kernel_CE)
  z_BabE = z_BabE * (h_BsE[:, :, None] if to_dst else h_BsE[:, None, :])
  want_BuE = z_BabE.mean(1 if to_dst else 2)
  got_BuE = np.asarray(_bilinear_mean(x_BabC, h_BsE, kernel_CE, to_dst))
  assert got_BuE.shape == want_BuE.shape == (3, 7 if to_dst else 5, 6)
  np.testing.assert_allclose(got_BuE, want_BuE, atol=1e-5, rtol=1e-5)
