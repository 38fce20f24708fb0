"""Torch -> flax weight copying for the nets' parity tests (not jatlas.io).

Layouts: Conv2d OIHW -> HWIO, Conv1d OIL -> (1, L, I, O), Linear (out, in) ->
(in, out); a Linear after a conv-stack flatten also has its rows permuted from
torch's (C, H, W) order to the NHWC flatten's (H, W, C) order.
"""
import chex
import jax
import numpy as np
import torch


def _np(t: torch.Tensor) -> np.ndarray:
  return t.detach().cpu().numpy().astype(np.float32)


def conv(m: torch.nn.Conv1d | torch.nn.Conv2d) -> dict:
  w = _np(m.weight)
  if w.ndim == 3:  # Conv1d (O, I, L) as a (1, L) Conv2D kernel
    w = w[:, :, None, :]
  out = {"kernel": w.transpose(2, 3, 1, 0)}
  if m.bias is not None:
    out["bias"] = _np(m.bias)
  return out


def linear(m: torch.nn.Linear, chw: tuple[int, ...] | None = None) -> dict:
  """`chw`: torch's (C, H, W) feature map shape when `m` follows a flatten."""
  w_IO = _np(m.weight).T
  if chw is not None:
    c, h, w = chw
    w_CHWO = w_IO.reshape(c, h, w, -1)
    w_IO = w_CHWO.transpose(1, 2, 0, 3).reshape(c * h * w, -1)
  return {"kernel": w_IO, "bias": _np(m.bias)}


def batch_norm(m: torch.nn.BatchNorm2d) -> tuple[dict, dict]:
  """Returns (params, batch_stats); num_batches_tracked has no counterpart."""
  return ({"scale": _np(m.weight), "bias": _np(m.bias)},
          {"mean": _np(m.running_mean), "var": _np(m.running_var)})


def randomize_batch_norm(m: torch.nn.BatchNorm2d) -> None:
  """Non-trivial affine params and running stats, so eval-mode BN is tested."""
  with torch.no_grad():
    m.weight.uniform_(0.5, 1.5)
    m.bias.normal_(0.0, 0.2)
    m.running_mean.normal_(0.0, 0.2)
    m.running_var.uniform_(0.5, 1.5)


def nchw(x_NHWC: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(x_NHWC.transpose(0, 3, 1, 2)))


def check_variables(net, variables, x) -> None:
  """The copied variables have exactly the tree and shapes `net.init` makes."""
  chex.assert_trees_all_equal_shapes(jax.eval_shape(net.init, jax.random.key(0), x), variables)


def run_twins(net, variables, x, twin, x_torch):
  """(torch logits, flax logits, flax taps) of the two nets on the same input."""
  check_variables(net, variables, x)
  logits, taps = net.apply(variables, x, return_taps=True)
  with torch.no_grad():
    expected = twin(x_torch).numpy()
  return expected, logits, taps
