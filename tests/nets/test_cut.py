"""Cutting nets at taps: the two halves of every cut compose to the whole net.

`net.apply(v, net.apply(v, x, stop=t), start=t)` equals `net.apply(v, x)` for every
tap of every net, under jit; a middle slice (start, stop) reproduces the whole run's
tap; ResNet's BatchNorm in eval and train mode (logits and updated batch_stats);
bad tap names and bad orders are errors that list the taps.
"""
import functools

import chex
import jax
import numpy as np
import pytest
from flax import traverse_util

from jatlas import nets
from test_nets_common import CASES, random_variables

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
  net, x_shape = CASES[request.param]
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  return request.param, net, x, random_variables(net, x)


def jit_apply(net, **kwargs):
  return jax.jit(functools.partial(net.apply, **kwargs))


def test_tap_names_need_no_data(case):
  _, net, x, variables = case
  _, taps = net.apply(variables, x, return_taps=True)
  assert net.tap_names() == tuple(taps)
  assert net.tap_names()[-1] == "logits"


def test_halves_of_every_cut_compose_to_the_whole_net(case):
  _, net, x, variables = case
  full_NK, taps = jit_apply(net, return_taps=True)(variables, x)
  for t in net.tap_names()[:-1]:
    h, first = jit_apply(net, stop=t, return_taps=True)(variables, x)
    assert list(first) == list(taps)[:list(taps).index(t) + 1], t
    np.testing.assert_allclose(h, taps[t], **TOL, err_msg=t)
    logits_NK, rest = jit_apply(net, start=t, return_taps=True)(variables, h)
    assert list(rest) == list(taps)[list(taps).index(t) + 1:], t
    np.testing.assert_allclose(logits_NK, full_NK, **TOL, err_msg=t)


def test_stop_at_logits_is_the_whole_net(case):
  _, net, x, variables = case
  np.testing.assert_array_equal(net.apply(variables, x, stop="logits"),
                                net.apply(variables, x))


def test_middle_slice_reproduces_its_taps(case):
  _, net, x, variables = case
  _, taps = net.apply(variables, x, return_taps=True)
  names = net.tap_names()
  start, stop = names[0], names[-2]
  out, middle = jit_apply(net, start=start, stop=stop, return_taps=True)(
      variables, taps[start])
  assert list(middle) == list(names[1:-1])
  chex.assert_trees_all_close(dict(middle), {k: taps[k] for k in names[1:-1]}, **TOL)
  np.testing.assert_allclose(out, taps[stop], **TOL)


def _flat_stats(updates):
  return traverse_util.flatten_dict(updates["batch_stats"], sep="/")


def test_resnet_train_mode_halves_give_the_logits_and_batch_stats_of_the_whole():
  net, x_shape = CASES["resnet"]
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  variables = random_variables(net, x)
  train = dict(train=True, mutable=["batch_stats"])
  full_NK, full = jit_apply(net, **train)(variables, x)
  old, want = _flat_stats(variables), _flat_stats(full)
  assert all(np.any(want[k] != old[k]) for k in old)  # every BN updated
  for t in ("stem", "block1", "block2"):  # a BatchNorm on either side
    h, first = jit_apply(net, stop=t, **train)(variables, x)
    logits_NK, second = jit_apply(net, start=t, **train)(variables, h)
    np.testing.assert_allclose(logits_NK, full_NK, **TOL, err_msg=t)
    a, b = _flat_stats(first), _flat_stats(second)
    changed_a = {k for k in old if np.any(a[k] != old[k])}
    changed_b = {k for k in old if np.any(b[k] != old[k])}
    assert changed_a and changed_b and not changed_a & changed_b, t
    assert changed_a | changed_b == set(old), t
    union = {k: a[k] if k in changed_a else b[k] for k in old}
    chex.assert_trees_all_close(union, want, **TOL)
    # the second half run on the first half's updated variables: the same
    chained = {**variables, "batch_stats": first["batch_stats"]}
    _, both = net.apply(chained, h, start=t, **train)
    chex.assert_trees_all_close(_flat_stats(both), want, **TOL)


def test_resnet_eval_mode_cut_keeps_running_stats_out_of_batch():
  net, x_shape = CASES["resnet"]
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  variables = random_variables(net, x)
  h = net.apply(variables, x, stop="block2")
  # eval mode: one example alone gets the same output as in its batch
  np.testing.assert_allclose(net.apply(variables, h[:1], start="block2"),
                             net.apply(variables, x)[:1], **TOL)


def test_input_checks_apply_only_from_the_input():
  net = nets.LeNet5(channels=(4, 4, 8), hidden=6)
  x = np.zeros((2, 28, 28, 1), np.float32)
  variables = random_variables(net, x)
  # a 5x5 map would be too small as an input, but is pool2's output here
  h = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype(np.float32)
  assert net.apply(variables, h, start="pool2").shape == (2, 2)
  with pytest.raises(ValueError, match=r"too small"):
    net.apply(variables, h)
  cnn = nets.CNN1D(channels=(4, 4, 4), num_classes=3)
  v1d = random_variables(cnn, np.zeros((2, 1, 16, 1), np.float32))
  flat_ND = np.zeros((2, 2, 4), np.float32)  # rank 3: only the input must be (N, 1, L, C)
  with pytest.raises(ValueError, match=r"\(N, 1, L, C\)"):
    cnn.apply(v1d, flat_ND)
  assert cnn.apply(v1d, flat_ND, start="conv3").shape == (2, 3)


def test_unknown_taps_are_listed_with_suggestions(case):
  name, net, x, variables = case
  taps = ", ".join(net.tap_names())
  with pytest.raises(ValueError, match=rf"^{type(net).__name__}: stop='logit' is not a tap "
                     rf"\(did you mean 'logits'\?\); its taps are {taps}(\n|$)"):
    net.apply(variables, x, stop="logit")
  with pytest.raises(ValueError, match=r"start='nope' is not a tap; stop='x' is not"):
    net.apply(variables, x, start="nope", stop="x")


def test_start_must_come_before_stop(case):
  _, net, x, variables = case
  first, second = net.tap_names()[:2]
  with pytest.raises(ValueError, match="stop must come after start"):
    net.apply(variables, x, start=second, stop=first)
  with pytest.raises(ValueError, match="stop must come after start"):
    net.apply(variables, x, start=first, stop=first)
  with pytest.raises(ValueError, match="stop must come after start"):
    net.apply(variables, x, start="logits")


def test_suggestion_names_the_close_tap():
  net = nets.LeNet5()
  with pytest.raises(ValueError, match=r"did you mean 'conv3'"):
    net.apply({}, np.zeros((1, 32, 32, 1), np.float32), stop="conv4")


def test_basic_block_module_runs_the_resnet_block():
  net, x_shape = CASES["resnet"]  # block2 halves the map and projects 4 -> 8 channels
  x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
  variables = random_variables(net, x)
  h = net.apply(variables, x, stop="block1")
  block = nets.BasicBlock(8, stride=2)
  block_vars = {c: variables[c]["block2"] for c in ("params", "batch_stats")}
  np.testing.assert_allclose(block.apply(block_vars, h),
                             net.apply(variables, h, start="block1", stop="block2"), **TOL)
