"""What encoders read: one layer stacked over models, or a dict of stacked tensors.

`W` is either an array [R, ...] (one tensor of R models) or a dict {flat name:
[R, ...]} (what `{n: zoo.stacked(n, rows) for n in zoo.names}` gives). A tensor is
read as a matrix X [R, d_H, d_W] with d_H the units the layer makes and d_W what
each unit reads, the PyTorch Linear layout (out x in), so ProbeX's probes act on
the layer's input side (X u = the layer's pre-bias output for input u):
  Dense kernel [R, in, out]        -> [R, out, in]
  conv kernel  [R, kh, kw, in, out] -> [R, out, kh * kw * in]   (HWIO, h-major)
  bias / vector [R, U]             -> [R, U, 1]
  [R, d_H, d_W] given as is when it has no kernel name (`as_matrix(..., kernel=False)`)

Usage:
  tensors_R = as_tensors(W)                  # dict, every leading axis R checked
  x_RHW = layer_matrix(tensors_R["params/conv2/kernel"], "params/conv2/kernel")
"""
from typing import Mapping

import numpy as np

LAYER = "layer"  # the name of a bare array W


def as_tensors(W) -> dict[str, np.ndarray]:
  """Array or dict of arrays -> {name: float32 [R, ...]} with one R for all."""
  if isinstance(W, Mapping):
    if not W:
      raise ValueError("W is an empty dict: expected {tensor name: [R, ...] array}")
    tensors = {str(k): np.asarray(v, np.float32) for k, v in W.items()}
  else:
    tensors = {LAYER: np.asarray(W, np.float32)}
  bad = [f"{k}: shape {v.shape}" for k, v in tensors.items() if v.ndim < 2]
  if bad:
    raise ValueError(f"W tensors need a leading model axis and >= 1 weight axis: {bad}")
  rows = {k: v.shape[0] for k, v in tensors.items()}
  if len(set(rows.values())) != 1:
    raise ValueError(f"W tensors disagree on the number of models (leading axis): {rows}")
  return tensors


def num_models(tensors: Mapping[str, np.ndarray]) -> int:
  return int(next(iter(tensors.values())).shape[0])


def layer_matrix(w_R, name: str = LAYER) -> np.ndarray:
  """One stacked tensor -> X [R, d_H, d_W] (module docstring)."""
  w_R = np.asarray(w_R, np.float32)
  if w_R.ndim == 2:
    return w_R[:, :, None]
  if w_R.ndim == 3 and not name.endswith("kernel"):
    return w_R
  # a kernel's last axis is its output units; everything before it is what a unit reads
  return np.moveaxis(w_R, -1, 1).reshape(w_R.shape[0], w_R.shape[-1], -1)


def pick_layer(tensors: Mapping[str, np.ndarray], layer: str | None) -> tuple[str, np.ndarray]:
  """The tensor an encoder of one layer reads: `layer`, or the only one present."""
  if layer is None:
    if len(tensors) != 1:
      raise ValueError(f"W holds {len(tensors)} tensors; pass layer= one of {sorted(tensors)}")
    layer = next(iter(tensors))
  if layer not in tensors:
    import difflib
    near = difflib.get_close_matches(layer, list(tensors), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise KeyError(f"layer {layer!r} not in W{hint}; W holds {sorted(tensors)}")
  return layer, tensors[layer]
