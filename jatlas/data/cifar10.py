"""Reader for the CIFAR-10 "python version" folder (cifar-10-batches-py).

Files: data_batch_1..5 and test_batch (pickled dicts with b"data" uint8 (N, 3072)
rows laid out channel-major as 3x32x32, and b"labels"), batches.meta
(b"label_names"). Pickle can run code: only read folders you trust.

Usage:
  ds = load_cifar10("cifar-10-batches-py")   # x_train (45000, 32, 32, 3) in [0, 1]
"""
import os
import pathlib
import pickle

import numpy as np

from jatlas.data.dataset import Dataset, split_off

_ROW_CHW = (3, 32, 32)


def load_cifar10(root: str | os.PathLike, val_fraction: float = 0.1,
                 seed: int = 0) -> Dataset:
  """Reads the batches present (at least data_batch_1) into float32 NHWC in [0, 1].

  Val is `val_fraction` of the training batches, stratified, random_state=seed.
  """
  root = pathlib.Path(root)
  batches = [root / f"data_batch_{i}" for i in range(1, 6)]
  batches = [p for p in batches if p.exists()]
  if not batches:
    raise FileNotFoundError(f"no CIFAR-10 training batches (data_batch_1..5) in {root}")
  meta = _unpickle(root / "batches.meta")
  names = _get(meta, b"label_names", root / "batches.meta")
  class_names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
  parts = [_read_batch(p) for p in batches]
  x_train = np.concatenate([x for x, _ in parts])
  y_train = np.concatenate([y for _, y in parts])
  x_test, y_test = _read_batch(root / "test_batch")
  x_train, y_train, x_val, y_val = split_off(x_train, y_train, val_fraction, seed)
  return Dataset("cifar10", x_train, y_train, x_val, y_val, x_test, y_test, class_names)


def _read_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Returns (x (N, 32, 32, 3) float32, y (N,) int32) of one pickled batch."""
  batch = _unpickle(path)
  data = np.asarray(_get(batch, b"data", path))
  labels = np.asarray(_get(batch, b"labels", path))
  row = int(np.prod(_ROW_CHW))
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
    raise ValueError(f"{path}: b'data' must be uint8 (N, {row}), got {data.dtype} "
                     f"{data.shape}")
  if labels.shape != (len(data),):
    raise ValueError(f"{path}: {len(data)} images but b'labels' has shape {labels.shape}")
  x_NHWC = data.reshape(-1, *_ROW_CHW).transpose(0, 2, 3, 1)
  return x_NHWC.astype(np.float32) / 255.0, labels.astype(np.int32)


def _unpickle(path: pathlib.Path) -> dict:
  if not path.exists():
    raise FileNotFoundError(f"CIFAR-10 file {path} not found")
  with open(path, "rb") as f:
    # The official files were written by Python 2; "bytes" keeps their keys as bytes.
    obj = pickle.load(f, encoding="bytes")
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
  return obj


def _get(d: dict, key: bytes, path: pathlib.Path):
  if key not in d:
    raise KeyError(f"{path} has no key {key!r}; found {list(d)}")
  return d[key]
