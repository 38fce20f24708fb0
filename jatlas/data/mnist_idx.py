"""Reader for MNIST-style folders of IDX files (MNIST, Fashion-MNIST, KMNIST).

Files: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, each plain or with a ".gz" suffix.

Usage:
  ds = load_mnist_idx("mnist/")   # x_train (54000, 28, 28, 1) in [0, 1], test 10000
"""
import os
import pathlib
from typing import Sequence

import numpy as np

from jatlas.data.dataset import Dataset, split_off
from jatlas.data.idx import read_idx


def load_mnist_idx(root: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0,
                   class_names: Sequence[str] | None = None) -> Dataset:
  """Reads the four IDX files into float32 (N, H, W, 1) in [0, 1].

  Val is `val_fraction` of the train files, stratified, random_state=seed.
  class_names default to "0".."K-1", K = largest label + 1.
  """
  root = pathlib.Path(root)
  x_train, y_train = _read_pair(root, "train")
  x_test, y_test = _read_pair(root, "t10k")
  if class_names is None:
    class_names = tuple(str(c) for c in range(max(y_train.max(), y_test.max()) + 1))
  x_train, y_train, x_val, y_val = split_off(x_train, y_train, val_fraction, seed)
  return Dataset("mnist", x_train, y_train, x_val, y_val, x_test, y_test, tuple(class_names))


def _read_pair(root: pathlib.Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (x (N, H, W, 1) float32, y (N,) int32) of train or t10k."""
  images_path = _find(root, f"{prefix}-images-idx3-ubyte")
  labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.dtype != np.uint8 or images.ndim != 3:
    raise ValueError(f"{images_path}: expected 3-D ubyte images (magic 0x00000803), got "
                     f"{images.dtype} {images.shape}")
  if labels.dtype != np.uint8 or labels.ndim != 1:
    raise ValueError(f"{labels_path}: expected 1-D ubyte labels (magic 0x00000801), got "
                     f"{labels.dtype} {labels.shape}")
  if not len(labels):
    raise ValueError(f"{labels_path} holds no examples")
  if len(images) != len(labels):
    raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has "
                     f"{len(labels)} labels")
  x = images[..., None].astype(np.float32) / 255.0
  return x, labels.astype(np.int32)


def _find(root: pathlib.Path, stem: str) -> pathlib.Path:
  for path in (root / stem, root / f"{stem}.gz"):
    if path.exists():
      return path
  raise FileNotFoundError(f"MNIST IDX file {root / stem} (or .gz) not found")
