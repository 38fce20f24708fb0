"""jatlas nets <-> state dicts of their PyTorch twins.

A twin names its modules like the net's params (`conv1`, `block2.proj_bn`,
`head`), so names follow the rule table; layouts differ in two places:
  - the Dense right after a flatten (LeNet5 `fc1`, CNN1D `head`, MLP `fc1` on
    images) sees features in (C, S) order in torch (NCHW flatten) and in
    (S, C) order in jatlas (NHWC flatten), S = spatial positions;
  - CNN1D convs are (1, k) Conv2D kernels here and Conv1d (O, I, k) in torch.
`input_shape` is one example's shape, e.g. (32, 32, 3); it fixes the schema
that strict checking compares with, and S and C.

Usage:
  variables = from_torch(net, "twin.safetensors", input_shape=(32, 32, 3))
  state_dict = to_torch(net, variables, input_shape=(32, 32, 3))
  twin.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
"""
import dataclasses
import math

import flax.linen as nn
import jax
import numpy as np

from jatlas import flat_names, nets
from jatlas.io.load_torch import as_numpy, read_state_dict
from jatlas.io.strict import check_keys, shapes
from jatlas.io.torch_names import FLAX_TO_TORCH, TORCH_TO_FLAX, apply_rules


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a net's layout differs from the generic torch <-> flax rules."""
  flatten_dense: str | None = None  # the Dense fed by a flatten
  flatten_tap: str | None = None  # the tap that is flattened; None = the input
  conv1d: tuple[str, ...] = ()  # (1, k) Conv2D kernels that are Conv1d in torch


LAYOUTS = {
    nets.MLP: lambda net: Layout("fc1" if net.hidden else "head"),
    nets.LeNet5: lambda net: Layout("fc1", "conv3"),
    nets.CNN1D: lambda net: Layout(
        "head", f"conv{len(net.channels)}",
        tuple(f"conv{i}" for i in range(1, len(net.channels) + 1))),
    nets.SmallCNN: lambda net: Layout(),
    nets.ResNet: lambda net: Layout(),
}


def layout_of(net: nn.Module) -> Layout:
  try:
    return LAYOUTS[type(net)](net)
  except KeyError:
    raise ValueError(f"no torch adapter for {type(net).__name__}; known: "
                     f"{sorted(c.__name__ for c in LAYOUTS)}") from None


def _schema(net: nn.Module, input_shape) -> tuple[dict, tuple[int, int]]:
  """({flax name: shape} of the net's variables, (S, C) at its flatten)."""
  x = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  _, taps = jax.eval_shape(
      lambda v, x: net.apply(v, x, return_taps=True), variables, x)
  tap = layout_of(net).flatten_tap
  map_shape = x.shape if tap is None else taps[tap].shape
  # A (N, D) input is already flat: S = 1 makes the permutation the identity.
  s_c = (math.prod(map_shape[1:-1]), map_shape[-1]) if len(map_shape) > 2 else (1, 1)
  return shapes(flat_names.flatten_variables(variables)), s_c


def _permute_rows(w_IO: np.ndarray, s_c, to_jatlas: bool) -> np.ndarray:
  """Dense kernel rows (C, S) order <-> (S, C) order; other shapes unchanged."""
  s, c = s_c
  if w_IO.ndim != 2 or w_IO.shape[0] != s * c:
    return w_IO  # a wrong shape is reported by the strict check, not here
  a, b = (c, s) if to_jatlas else (s, c)
  return w_IO.reshape(a, b, -1).transpose(1, 0, 2).reshape(s * c, -1)


def _to_jatlas_layout(flat: dict, layout: Layout, s_c) -> dict:
  flat = dict(flat)
  if layout.flatten_dense and (k := f"params/{layout.flatten_dense}/kernel") in flat:
    flat[k] = _permute_rows(flat[k], s_c, to_jatlas=True)
  for conv in layout.conv1d:
    if (k := f"params/{conv}/kernel") in flat and flat[k].ndim == 3:
      flat[k] = flat[k][None]  # (k, I, O) -> (1, k, I, O)
  return flat


def _to_torch_layout(flat: dict, layout: Layout, s_c) -> dict:
  flat = dict(flat)
  if layout.flatten_dense:
    k = f"params/{layout.flatten_dense}/kernel"
    flat[k] = _permute_rows(flat[k], s_c, to_jatlas=False)
  for conv in layout.conv1d:
    flat[f"params/{conv}/kernel"] = flat[f"params/{conv}/kernel"][0]
  return flat


def from_torch(net: nn.Module, source, *, input_shape,
               strict: bool = True) -> dict:
  """Variables of `net` from its twin's state dict (path or mapping).

  strict: one StateDictMismatchError lists every missing, unexpected and
  mis-shaped key; non-strict drops unexpected keys and allows missing ones.
  """
  tensors, what = read_state_dict(source)
  expected, s_c = _schema(net, input_shape)
  converted = apply_rules(tensors, TORCH_TO_FLAX)
  flat = _to_jatlas_layout(converted.tensors, layout_of(net), s_c)
  check_keys(shapes(flat), expected, what=f"{what} as {type(net).__name__}",
             sources=converted.sources,
             unmatched=converted.unmatched if strict else (),
             allow_missing=not strict, allow_unexpected=not strict)
  return flat_names.unflatten_variables({k: v for k, v in flat.items() if k in expected})


def to_torch(net: nn.Module, variables, *, input_shape) -> dict[str, np.ndarray]:
  """The twin's state dict {torch name: array} (writable C-order copies).

  BatchNorms get `num_batches_tracked` = 0, so torch's strict
  `load_state_dict` accepts the dict.
  """
  flat = {k: as_numpy(v) for k, v in flat_names.flatten_variables(variables).items()}
  expected, s_c = _schema(net, input_shape)
  check_keys(shapes(flat), expected, what=f"{type(net).__name__} variables")
  converted = apply_rules(_to_torch_layout(flat, layout_of(net), s_c), FLAX_TO_TORCH)
  check_keys(shapes(converted.tensors), what=f"{type(net).__name__} variables",
             unmatched=converted.unmatched)
  return {k: np.array(v, order="C") for k, v in converted.tensors.items()}


def member_to_torch(zoo, row: int, *, input_shape=None) -> dict[str, np.ndarray]:
  """The torch state dict of zoo checkpoint `row` (a row of `zoo.table`).

  A row outside the table raises IndexError with the valid range.
  `input_shape`: one example's shape; default: the zoo manifest's.
  """
  variables = zoo.variables(row)
  shape = tuple(zoo.manifest["input_shape"] if input_shape is None else input_shape)
  return to_torch(zoo.model(), variables, input_shape=shape)
