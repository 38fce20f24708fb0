"""Reading safetensors files: the header, one tensor, a slice of one tensor.

The one reading path of jatlas.zoo (shards) and jatlas.io (checkpoints). The
header is parsed on open and the data is memory-mapped, so a read touches
only the bytes it returns. Every error names the file; the caller picks the
error type (`error=`), so each layer raises its own (ZooFormatError,
CheckpointError).

Usage:
  with open_tensors("ckpt.safetensors") as f:
    f.header()                         # {name: TensorInfo(shape, dtype)}, no data read
    w = f.read("fc1.weight")
    w_M = f.read("params/fc1/kernel", 2, 5)   # leading-axis rows 2, 3, 4
"""
import contextlib
import dataclasses
import difflib
import os
from typing import Iterator

import numpy as np
from safetensors import safe_open

# safetensors' dtype codes -> NumPy dtype names (bfloat16 and float8 as ml_dtypes names them).
DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
    "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64",
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


class TensorFileError(ValueError):
  """A safetensors file is missing, corrupt or truncated, or lacks a tensor."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  shape: tuple[int, ...]
  dtype: str  # a NumPy name ("float32"); safetensors' own code where NumPy has none


class TensorFile:
  """An open safetensors file; use through `open_tensors`."""

  def __init__(self, handle, path: str, error: type[Exception]):
    self._f, self.path, self._error = handle, path, error

  def names(self) -> list[str]:
    return list(self._f.keys())

  def header(self) -> dict[str, TensorInfo]:
    """{name: TensorInfo} of every tensor, from the header alone."""
    out = {}
    for k in self._f.keys():
      s = self._f.get_slice(k)
      out[k] = TensorInfo(tuple(s.get_shape()), DTYPES.get(s.get_dtype(), s.get_dtype()))
    return out

  def metadata(self) -> dict[str, str]:
    """The header's string->string `__metadata__` (empty if none)."""
    return dict(self._f.metadata() or {})

  def read(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
    """Tensor `name`, or rows [start, stop) of its leading axis."""
    self._check_name(name)
    try:
      if start is None and stop is None:
        return self._f.get_tensor(name)
      return self._f.get_slice(name)[start:stop]
    except Exception as e:  # safetensors' own error types
      raise self._error(f"{self.path}: cannot read tensor {name!r} "
                        f"(dtype {self._f.get_slice(name).get_dtype()}): {e}") from e

  def _check_name(self, name: str) -> None:
    keys = self.names()
    if name not in keys:
      near = difflib.get_close_matches(name, keys, n=3)
      raise self._error(f"{self.path} has no tensor {name!r} ({len(keys)} tensors"
                        f"{'; close: ' + ', '.join(near) if near else ''})")


@contextlib.contextmanager
def open_tensors(path, *, error: type[Exception] = TensorFileError,
                 what: str = "safetensors file") -> Iterator[TensorFile]:
  """Opens `path`; `what` names the file in a not-found error ("checkpoint file")."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise error(f"{what} {path} not found")
  try:
    handle = safe_open(path, framework="numpy")
  except Exception as e:  # safetensors raises its own error type on bad headers
    raise error(f"corrupt or truncated safetensors file {path}: {e}") from e
  with handle:
    yield TensorFile(handle, path, error)
