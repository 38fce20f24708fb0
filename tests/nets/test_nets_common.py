"""Shared contract: taps under jit, lowerings, vmap over members."""
import functools

import chex
import jax
import numpy as np
import pytest

from jatlas import nets

MEMBERS = 4
# Tiny nets: these tests check plumbing, the per-net files check numerics.
CASES = {
    "mlp": (nets.MLP(hidden=(8, 6), num_classes=3), (2, 4, 4, 1)),
    "small_cnn": (nets.SmallCNN(channels=(4, 4, 4), num_classes=3),
                  (2, 8, 8, 1)),
    "lenet5": (nets.LeNet5(channels=(4, 4, 8), hidden=6), (2, 28, 28, 1)),
    "resnet": (nets.ResNet(stage_blocks=(1, 2), widths=(4, 8), num_classes=3),
               (2, 8, 8, 2)),
    "cnn1d": (nets.CNN1D(channels=(4, 4, 4), num_classes=3), (2, 1, 16, 1)),
}


def random_variables(net, x_NHWC, seed=0, members=None):
  """Random variables shaped like net.init's, optionally member-stacked."""
  rng = np.random.default_rng(seed)
  lead = () if members is None else (members,)

  def fill(path, leaf):
    shape = lead + leaf.shape
    if jax.tree_util.keystr(path).endswith("['var']"):
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (0.3 * rng.normal(size=shape)).astype(np.float32)

  shapes = jax.eval_shape(net.init, jax.random.key(0), x_NHWC)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def with_lowering(net, lowering):
  """`net` with its convolutions lowered as `lowering` (the MLP has none)."""
  return net.clone(conv_lowering=lowering) if hasattr(net, "conv_lowering") else net


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
  net, x_shape = CASES[request.param]
  x_NHWC = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  return request.param, net, x_NHWC, random_variables(net, x_NHWC)


def test_jit_keeps_tap_order(case):
  _, net, x_NHWC, variables = case
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
  jit_logits_NK, jit_taps = jax.jit(
      functools.partial(net.apply, return_taps=True))(variables, x_NHWC)
  assert list(jit_taps) == list(taps)
  assert list(taps)[-1] == "logits"
  chex.assert_trees_all_close(jit_taps, taps, atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(taps["logits"], logits_NK)
  np.testing.assert_allclose(jit_logits_NK, logits_NK, atol=1e-5, rtol=1e-5)


def test_return_taps_false_gives_logits_only(case):
  _, net, x_NHWC, variables = case
  out = net.apply(variables, x_NHWC)
  assert isinstance(out, jax.Array)
  assert out.shape == (x_NHWC.shape[0], net.num_classes)


def test_train_flag_matters_only_with_batch_norm(case):
  name, net, x_NHWC, variables = case
  eval_NK = net.apply(variables, x_NHWC)
  if name == "resnet":  # batch statistics replace the running ones
    train_NK, _ = net.apply(variables, x_NHWC, train=True,
                            mutable=["batch_stats"])
    assert np.max(np.abs(train_NK - eval_NK)) > 1e-3
  else:
    np.testing.assert_array_equal(net.apply(variables, x_NHWC, train=True),
                                  eval_NK)


def test_im2col_and_xla_lowerings_agree(case):
  _, net, x_NHWC, variables = case
  if not hasattr(net, "conv_lowering"):
    pytest.skip("no convolutions")
  taps = {}
  for lowering in ("im2col", "xla"):
    _, taps[lowering] = net.clone(conv_lowering=lowering).apply(
        variables, x_NHWC, return_taps=True)
  chex.assert_trees_all_close(taps["im2col"], taps["xla"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lowering", ["im2col", "xla"])
def test_vmap_over_members_matches_separate_applies(case, lowering):
  _, net, x_NHWC, _ = case
  net = with_lowering(net, lowering)
  stacked = random_variables(net, x_NHWC, seed=2, members=MEMBERS)
  logits_MNK = jax.vmap(net.apply, in_axes=(0, None))(stacked, x_NHWC)
  for m in range(MEMBERS):
    member = jax.tree.map(lambda a: a[m], stacked)
    np.testing.assert_allclose(logits_MNK[m], net.apply(member, x_NHWC),
                               atol=1e-5, rtol=1e-5)
