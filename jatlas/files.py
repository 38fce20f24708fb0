"""Atomic file writes (a reader never sees a half-written file) and file checksums.

Each writer writes `path.tmp-<pid>` in the target folder, flushes it to disk,
then renames it over `path` (rename is atomic on POSIX filesystems). Every
file gets the mode a plain open() would give it (0o666 less the umask).

Usage:
  write_json("zoo.json", manifest); write_parquet(...); write_safetensors(...)
  digest = sha256("params-e0001.safetensors")
"""
import contextlib
import hashlib
import json
import os
import stat
from typing import Mapping

import numpy as np
import pandas as pd
from safetensors.numpy import save_file


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path next to `path`; renames it to `path` on success."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    mode = _new_file_mode(tmp)
    yield tmp
    # Some writers replace `tmp` by a file of their own mode (safetensors' writer
    # renames a 0600 temporary file over it), so the mode is set afterwards.
    os.chmod(tmp, mode)
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _new_file_mode(path: str) -> int:
  """Creates `path` empty as open() would and returns its mode: 0o666 less the
  umask, read without os.umask(), which would change it for every thread."""
  if os.path.exists(path):
    os.remove(path)  # a leftover of a crashed writer with this pid keeps its old mode
  os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
  return stat.S_IMODE(os.stat(path).st_mode)


def sha256(path: str, chunk_bytes: int = 1 << 22) -> str:
  """The hex SHA-256 of a file's bytes, read in chunks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(chunk_bytes):
      h.update(chunk)
  return h.hexdigest()


def write_json(path: str, obj) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=str)


def write_parquet(path: str, table: pd.DataFrame) -> None:
  with atomic_path(path) as tmp:
    table.to_parquet(tmp, index=False)


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
  """Contiguous copies first: safetensors 0.8 writes non-contiguous views wrongly
  (np.require, not ascontiguousarray: that turns 0-d arrays into shape (1,))."""
  arrays = {k: np.require(v, requirements="C") for k, v in tensors.items()}
  with atomic_path(path) as tmp:
    save_file(arrays, tmp, metadata=dict(metadata or {}))
