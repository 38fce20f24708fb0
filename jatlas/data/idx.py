"""Parser for the IDX array format used by MNIST (optionally gzipped).

Header: two zero bytes, a type code byte, a dims-count byte, then one big-endian
uint32 per dim; the big-endian data follow. Magic 0x00000803 = 3-D ubyte.

Usage:
  images_NHW = read_idx("train-images-idx3-ubyte.gz")   # uint8 (60000, 28, 28)
"""
import gzip
import os
import pathlib
import struct

import numpy as np

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (".gz" is gunzipped) into a native-byte-order array."""
  path = pathlib.Path(path)
  raw = _read_bytes(path)
  if len(raw) < 4:
    raise ValueError(f"{path}: truncated IDX header: expected at least 4 bytes, "
                     f"found {len(raw)}")
  magic, = struct.unpack(">I", raw[:4])
  code, ndim = raw[2], raw[3]
  if raw[0] != 0 or raw[1] != 0 or code not in _DTYPES:
    raise ValueError(f"{path}: bad IDX magic number 0x{magic:08x}; expected 0x0000 then a "
                     f"type code in {[hex(c) for c in _DTYPES]} and the number of dims")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f"{path}: truncated IDX header: expected {header} bytes for {ndim} "
                     f"dims, found {len(raw)}")
  shape = struct.unpack(f">{ndim}I", raw[4:header])
  dtype = _DTYPES[code]
  count = int(np.prod(shape))
  expected = header + count * dtype.itemsize
  if len(raw) != expected:
    problem = "truncated" if len(raw) < expected else "has trailing bytes"
    raise ValueError(f"{path}: IDX file {problem}: expected {expected} bytes for a "
                     f"{dtype} array of shape {shape}, found {len(raw)}")
  data = np.frombuffer(raw, dtype, count=count, offset=header).reshape(shape)
  return data.astype(dtype.newbyteorder("="))


def _read_bytes(path: pathlib.Path) -> bytes:
  if path.suffix != ".gz":
    return path.read_bytes()
  try:
    return gzip.decompress(path.read_bytes())
  except (OSError, EOFError) as e:  # bad header / stream cut short
    raise ValueError(f"{path}: corrupt gzip stream: {e}") from e
