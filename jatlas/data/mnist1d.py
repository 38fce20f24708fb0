"""MNIST-1D (Greydanus & Kobak), regenerated offline from the `mnist1d` package.

Usage:
  ds = load_mnist1d()   # x_train (3600, 1, 40, 1), val 400, test 1000; 10 classes
"""
import contextlib
import random

import numpy as np

from jatlas.data.dataset import Dataset, split_off


def load_mnist1d(num_samples: int = 5000, seed: int = 42,
                 val_fraction: float = 0.1) -> Dataset:
  """Generates MNIST-1D with the package defaults, as float32 (N, 1, 40, 1).

  Train/test is the package's own 80/20 cut of `num_samples`; val is
  `val_fraction` of that train part (stratified, random_state=seed). With the
  defaults the data equal the published mnist1d_data.pkl.
  """
  # Imported here: the package pulls in matplotlib and requests at import time.
  from mnist1d import data as mnist1d_data

  if num_samples < 10 or num_samples % 10:
    raise ValueError(f"num_samples must be a positive multiple of 10 (one share per "
                     f"class), got {num_samples}")
  args = mnist1d_data.get_dataset_args()
  args.num_samples = num_samples
  args.seed = seed
  # make_dataset, never get_dataset: the latter downloads by default.
  with _global_rng_restored():
    raw = mnist1d_data.make_dataset(args)
  x_train, y_train = _as_signals(raw["x"]), raw["y"].astype(np.int32)
  x_test, y_test = _as_signals(raw["x_test"]), raw["y_test"].astype(np.int32)
  x_train, y_train, x_val, y_val = split_off(x_train, y_train, val_fraction, seed)
  class_names = tuple(str(c) for c in range(10))
  return Dataset("mnist1d", x_train, y_train, x_val, y_val, x_test, y_test, class_names)


def _as_signals(x_NL: np.ndarray) -> np.ndarray:
  """(N, L) float64 -> (N, 1, L, 1) float32."""
  return x_NL.astype(np.float32)[:, None, :, None]


@contextlib.contextmanager
def _global_rng_restored():
  """make_dataset reseeds numpy's and Python's global RNGs; undo that for callers."""
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    yield
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
