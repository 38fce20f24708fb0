"""SmallCNN: torch parity; taps; the Small CNN Zoo's 4,970 params."""
import chex
import jax
import numpy as np
import pytest
import torch

import torch_copy
from jatlas.nets import SmallCNN

N, H, W, C = 2, 12, 12, 1
K = 10


class TorchSmallCNN(torch.nn.Module):

  def __init__(self, c_in, channels=(16, 16, 16), num_classes=10):
    super().__init__()
    dims = (c_in, *channels)
    self.convs = torch.nn.ModuleList(
        torch.nn.Conv2d(a, b, 3, stride=2, padding=1)
        for a, b in zip(dims[:-1], dims[1:]))
    self.head = torch.nn.Linear(dims[-1], num_classes)

  def forward(self, x_NCHW):
    h = x_NCHW
    for conv in self.convs:
      h = torch.relu(conv(h))
    return self.head(h.mean(dim=(2, 3)))


def copy_weights(twin: TorchSmallCNN) -> dict:
  params = {f"conv{i}": torch_copy.conv(conv)
            for i, conv in enumerate(twin.convs, start=1)}
  params["head"] = torch_copy.linear(twin.head)
  return {"params": params}


def torch_and_jax():
  torch.manual_seed(0)
  twin = TorchSmallCNN(C).eval()
  x_NHWC = np.random.default_rng(0).normal(size=(N, H, W, C)).astype(np.float32)
  net = SmallCNN(num_classes=K)
  return torch_copy.run_twins(net, copy_weights(twin), x_NHWC, twin, torch_copy.nchw(x_NHWC))


@pytest.fixture(scope="module")
def outputs():
  return torch_and_jax()


def test_logits_match_torch(outputs):
  expected_NK, logits_NK, _ = outputs
  np.testing.assert_allclose(logits_NK, expected_NK, atol=1e-5, rtol=1e-5)


def test_taps(outputs):
  _, logits_NK, taps = outputs
  assert list(taps) == ["conv1", "conv2", "conv3", "pool", "logits"]
  chex.assert_shape(list(taps.values()), [
      (N, 6, 6, 16), (N, 3, 3, 16), (N, 2, 2, 16), (N, 16), (N, K)])
  np.testing.assert_array_equal(taps["logits"], logits_NK)


def test_param_count_matches_small_cnn_zoo():
  shapes = jax.eval_shape(SmallCNN().init, jax.random.key(0),
                          np.zeros((1, 28, 28, 1), np.float32))
  assert sum(a.size for a in jax.tree.leaves(shapes)) == 4970
