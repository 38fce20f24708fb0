"""CNN1D: matches a torch Conv1d twin; taps; the notebook's 5,210 params."""
import jax
import numpy as np
import pytest
import torch

import torch_copy
from jatlas.nets import CNN1D

N, L = 3, 40
K = 10


class TorchCNN1D(torch.nn.Module):

  def __init__(self, channels=25, kernels=(5, 3, 3), padding=None, stride=2,
               linear_in=125, num_classes=10):
    super().__init__()
    dims = (1, channels, channels, channels)
    self.convs = torch.nn.ModuleList(
        torch.nn.Conv1d(a, b, k, stride=stride,
                        padding=k // 2 if padding is None else padding)
        for a, b, k in zip(dims[:-1], dims[1:], kernels))
    self.head = torch.nn.Linear(linear_in, num_classes)

  def forward(self, x_NCL):
    h = x_NCL
    for conv in self.convs:
      h = torch.relu(conv(h))
    return self.head(h.flatten(1))


def copy_weights(twin: TorchCNN1D) -> dict:
  params = {f"conv{i}": torch_copy.conv(conv)
            for i, conv in enumerate(twin.convs, start=1)}
  # torch flattens (C, L); the net flattens its (1, L, C) map.
  params["head"] = torch_copy.linear(twin.head, (25, 1, 5))
  return {"params": params}


def torch_and_jax(padding=None):
  torch.manual_seed(0)
  twin = TorchCNN1D(padding=padding).eval()
  x_NL = np.random.default_rng(0).normal(size=(N, L)).astype(np.float32)
  x_N1LC = x_NL[:, None, :, None]
  paddings = None if padding is None else (padding,) * 3
  net = CNN1D(paddings=paddings, num_classes=K)
  return torch_copy.run_twins(net, copy_weights(twin), x_N1LC, twin,
                              torch.from_numpy(x_NL[:, None, :]))


@pytest.fixture(scope="module", params=[None, 1], ids=["pad_k//2", "pad1"])
def outputs(request):
  return torch_and_jax(request.param)


def test_logits_match_torch(outputs):
  expected_NK, logits_NK, _ = outputs
  np.testing.assert_allclose(logits_NK, expected_NK, atol=1e-5, rtol=1e-5)


def test_taps(outputs):
  _, logits_NK, taps = outputs
  assert list(taps) == ["conv1", "conv2", "conv3", "logits"]
  assert taps["conv2"].shape == (N, 1, 10, 25)
  assert taps["conv3"].shape == (N, 1, 5, 25)
  np.testing.assert_array_equal(taps["logits"], logits_NK)


def test_param_count_matches_notebook():
  shapes = jax.eval_shape(CNN1D().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 1, L, 1), np.float32))
  assert sum(np.prod(a.shape) for a in jax.tree.leaves(shapes)) == 5210


def test_rejects_images():
  with pytest.raises(ValueError, match=r"\(2, 8, 8, 1\)"):
    CNN1D().init(jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32))
