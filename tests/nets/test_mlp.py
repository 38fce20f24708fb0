"""MLP: logits match a torch twin on copied weights; taps; parameter count."""
import chex
import jax
import numpy as np
import pytest
import torch

import torch_copy
from jatlas.nets import MLP

HIDDEN = (32, 16)
N, H, W, C = 3, 4, 4, 2
K = 5


class TorchMLP(torch.nn.Module):

  def __init__(self, d_in, hidden, num_classes):
    super().__init__()
    dims = (d_in, *hidden)
    self.fcs = torch.nn.ModuleList(
        torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
    self.head = torch.nn.Linear(dims[-1], num_classes)

  def forward(self, x_NCHW):
    h = x_NCHW.flatten(1)
    for fc in self.fcs:
      h = torch.relu(fc(h))
    return self.head(h)


def copy_weights(twin: TorchMLP) -> dict:
  # torch flattens NCHW, the MLP flattens NHWC: permute the first layer's rows.
  params = {f"fc{i}": torch_copy.linear(fc, (C, H, W) if i == 1 else None)
            for i, fc in enumerate(twin.fcs, start=1)}
  params["head"] = torch_copy.linear(twin.head)
  return {"params": params}


def torch_and_jax():
  torch.manual_seed(0)
  twin = TorchMLP(C * H * W, HIDDEN, K).eval()
  x_NHWC = np.random.default_rng(0).normal(size=(N, H, W, C)).astype(np.float32)
  net = MLP(hidden=HIDDEN, num_classes=K)
  return torch_copy.run_twins(net, copy_weights(twin), x_NHWC, twin, torch_copy.nchw(x_NHWC))


@pytest.fixture(scope="module")
def outputs():
  return torch_and_jax()


def test_logits_match_torch(outputs):
  expected_NK, logits_NK, _ = outputs
  np.testing.assert_allclose(logits_NK, expected_NK, atol=1e-5, rtol=1e-5)


def test_taps(outputs):
  _, logits_NK, taps = outputs
  assert list(taps) == ["fc1", "fc2", "logits"]
  chex.assert_shape([taps["fc1"], taps["fc2"], taps["logits"]],
                    [(N, 32), (N, 16), (N, K)])
  np.testing.assert_array_equal(taps["logits"], logits_NK)
  assert float(np.min(taps["fc2"])) >= 0.0  # post-activation


def test_param_count():
  x_NHWC = np.zeros((1, 1, 40, 1), np.float32)
  shapes = jax.eval_shape(MLP(hidden=(100,), num_classes=10).init,
                          jax.random.key(0), x_NHWC)
  assert sum(a.size for a in jax.tree.leaves(shapes)) == 40 * 100 + 100 + 1010
