"""LeNet5: torch parity; taps; the paper's 91,481 params; size errors."""
import chex
import jax
import numpy as np
import pytest
import torch

import torch_copy
import torch_twins
from jatlas.nets import LeNet5


def copy_weights(twin: torch_twins.LeNet5, chw) -> dict:
  return {"params": {
      "conv1": torch_copy.conv(twin.conv1),
      "conv2": torch_copy.conv(twin.conv2),
      "conv3": torch_copy.conv(twin.conv3),
      "fc1": torch_copy.linear(twin.fc1, chw),
      "head": torch_copy.linear(twin.head),
  }}


def conv3_hw(h, w):
  return tuple((s // 2 - 4) // 2 - 4 for s in (h, w))


def torch_and_jax(x_shape, num_classes):
  torch.manual_seed(0)
  hw = conv3_hw(*x_shape[1:3])
  twin = torch_twins.LeNet5(x_shape[-1], 120 * hw[0] * hw[1], num_classes).eval()
  x_NHWC = np.random.default_rng(0).normal(size=x_shape).astype(np.float32)
  net = LeNet5(num_classes=num_classes)
  return torch_copy.run_twins(net, copy_weights(twin, (120, *hw)), x_NHWC, twin,
                              torch_copy.nchw(x_NHWC))


# 32x32x3 is the paper's input; 30x30 makes the pools floor odd sizes
# (15 -> 11 -> 5).
CASES = {"rgb32": ((2, 32, 32, 3), 1), "gray30": ((2, 30, 30, 1), 2)}


@pytest.fixture(scope="module", params=sorted(CASES))
def outputs(request):
  return torch_and_jax(*CASES[request.param])


def test_logits_match_torch(outputs):
  expected_NK, logits_NK, _ = outputs
  np.testing.assert_allclose(logits_NK, expected_NK, atol=1e-5, rtol=1e-5)


def test_taps(outputs):
  _, logits_NK, taps = outputs
  assert list(taps) == [
      "conv1", "pool1", "conv2", "pool2", "conv3", "fc1", "logits"]
  n, h = logits_NK.shape[0], taps["conv1"].shape[1]
  h2 = h // 2 - 4
  chex.assert_shape(list(taps.values())[1:], [
      (n, h // 2, h // 2, 6), (n, h2, h2, 16), (n, h2 // 2, h2 // 2, 16),
      (n, h2 // 2 - 4, h2 // 2 - 4, 120), (n, 84), logits_NK.shape])
  np.testing.assert_array_equal(taps["logits"], logits_NK)


def _count(x_shape, **kwargs):
  shapes = jax.eval_shape(LeNet5(**kwargs).init, jax.random.key(0),
                          jax.ShapeDtypeStruct(x_shape, np.float32))
  return sum(np.prod(a.shape) for a in jax.tree.leaves(shapes))


def test_param_count_matches_paper():
  assert _count((1, 32, 32, 3), num_classes=1) == 91481


def test_grayscale_28x28():
  # conv3 output is 1x1x120, so fc1 has 120 * 84 + 84 params.
  assert _count((1, 28, 28, 1), num_classes=2) == 61026


def test_too_small_input_names_its_shape():
  with pytest.raises(ValueError, match=r"\(2, 16, 16, 3\).*conv3"):
    LeNet5().init(jax.random.key(0), np.zeros((2, 16, 16, 3), np.float32))
