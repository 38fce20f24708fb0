"""Atomic file writes: a reader never sees a half-written file (zoo store, jatlas.io).

Each writer writes `path.tmp-<pid>` in the target folder, flushes it to disk,
then renames it over `path` (rename is atomic on POSIX filesystems).
"""
import contextlib
import json
import os
from typing import Mapping

import numpy as np
import pandas as pd
from safetensors.numpy import save_file


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path next to `path`; renames it to `path` on success."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    yield tmp
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=str)


def write_parquet(path: str, table: pd.DataFrame) -> None:
  with atomic_path(path) as tmp:
    table.to_parquet(tmp, index=False)


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
  """Contiguous copies first: safetensors 0.8 writes non-contiguous views wrongly."""
  arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  with atomic_path(path) as tmp:
    save_file(arrays, tmp, metadata=dict(metadata or {}))
