"""safetensors files <-> NumPy: whole files, single tensors, one layer of many.

Reads touch only the requested tensors (the header is parsed, the data is
memory-mapped), so one layer of 1,000 checkpoints costs 1,000 small reads.

Usage:
  w_OI = read_tensor("ckpt.safetensors", "fc1.weight")
  w_FOI = read_layer(paths, "fc1.weight")          # [files, out, in]
  save_safetensors("out.safetensors", variables, {"format": "flax"})
"""
import os
from typing import Mapping, Sequence

import jax
import numpy as np

from jatlas import flat_names, tensor_files
from jatlas.files import write_safetensors


class CheckpointError(ValueError):
  """A checkpoint file is missing, corrupt or truncated, or lacks a tensor."""


def _open(path: str):
  return tensor_files.open_tensors(path, error=CheckpointError, what="checkpoint file")


def tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
  """{name: shape} from the header alone."""
  with _open(path) as f:
    return {k: info.shape for k, info in f.header().items()}


def read_tensor(path: str, name: str) -> np.ndarray:
  """One tensor, as stored (torch layout for torch checkpoints)."""
  with _open(path) as f:
    return f.read(name)


def read_layer(paths: Sequence[str], name: str) -> np.ndarray:
  """Tensor `name` of every file, stacked: [len(paths), *shape].

  All files must hold `name` with one shape and dtype; the error names the
  first file that differs from the first file.
  """
  out = None
  for i, path in enumerate(paths):
    a = read_tensor(path, name)
    if out is None:
      out = np.empty((len(paths), *a.shape), a.dtype)
    elif a.shape != out.shape[1:] or a.dtype != out.dtype:
      raise CheckpointError(
          f"{path}: tensor {name!r} is {a.dtype}{list(a.shape)}, but "
          f"{paths[0]} has {out.dtype}{list(out.shape[1:])}")
    out[i] = a
  if out is None:
    raise ValueError(f"read_layer({name!r}) needs at least one file")
  return out


def load_file(path: str) -> dict[str, np.ndarray]:
  """Every tensor of one file, keyed by name."""
  with _open(path) as f:
    return {k: f.read(k) for k in f.names()}


def read_metadata(path: str) -> dict[str, str]:
  """The header's string->string `__metadata__` (empty if none)."""
  with _open(path) as f:
    return f.metadata()


def save_safetensors(path: str, tree: Mapping,
                     metadata: Mapping[str, str] | None = None) -> None:
  """Writes a flat {name: array} dict or a nested pytree (names joined by "/").

  Arrays are copied to contiguous host memory (safetensors 0.8 writes
  transposed views wrongly); the file appears atomically. Metadata must map
  str to str, as the format allows nothing else.
  """
  bad = {k: type(v).__name__ for k, v in (metadata or {}).items()
         if not (isinstance(k, str) and isinstance(v, str))}
  if bad:
    raise TypeError(f"safetensors metadata must map str to str; {path}: got {bad}")
  flat = flat_names.flatten_variables(tree)
  arrays = {k: np.asarray(jax.device_get(v)) for k, v in flat.items()}
  write_safetensors(os.fspath(path), arrays, metadata)
