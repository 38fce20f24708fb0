"""scikit-learn's 8x8 handwritten digits (1,797 images), the embedded default dataset.

Usage:
  ds = load_digits()            # x_train (1293, 8, 8, 1), val 144, test 360
  ds = load_digits(size=32)     # bilinear upsampling to (N, 32, 32, 1)
"""
import numpy as np
from PIL import Image

from jatlas.data.dataset import Dataset, split_off


def load_digits(size: int = 8, val_fraction: float = 0.1, test_fraction: float = 0.2,
                seed: int = 0) -> Dataset:
  """Loads sklearn digits as float32 (N, size, size, 1) in [0, 1] with stratified splits.

  The test split is `test_fraction` of all 1,797 images (stratified
  train_test_split with random_state=seed, the usual sklearn protocol); val is
  `val_fraction` of the remaining training images, split the same way.
  """
  if not isinstance(size, int) or size < 1:
    raise ValueError(f"digits size must be a positive int, got {size!r}")
  from sklearn import datasets  # here: importing sklearn takes ~1.5 s

  raw = datasets.load_digits()
  x_NHW = (raw.images / 16.0).astype(np.float32)
  if size != 8:
    x_NHW = _resize_bilinear(x_NHW, size)
  x = x_NHW[..., None]
  y = raw.target.astype(np.int32)
  x_train, y_train, x_test, y_test = split_off(x, y, test_fraction, seed)
  x_train, y_train, x_val, y_val = split_off(x_train, y_train, val_fraction, seed)
  name = "digits" if size == 8 else f"digits_{size}px"
  class_names = tuple(str(c) for c in raw.target_names)
  return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, class_names)


def _resize_bilinear(x_NHW: np.ndarray, size: int) -> np.ndarray:
  """PIL bilinear resize of float images to (N, size, size); stays in [0, 1]."""
  out = [np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
         for img in x_NHW]
  # Bilinear weights are convex, so only float rounding can leave [0, 1].
  return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)
