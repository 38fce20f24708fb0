"""Reader for a dataset saved with np.savez.

Keys: x_train, y_train, x_test, y_test; optional x_val + y_val (else val is
carved from train) and class_names. x is NHWC, NHW (a channel is added) or NL
(1-D signals, stored as (N, 1, L, 1)); uint8 x is scaled by 1/255, float x kept.

Usage:
  np.savez("toy.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
  ds = load_npz("toy.npz")
"""
import os
import pathlib

import numpy as np

from jatlas.data.dataset import Dataset, split_off

_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
  """Reads an .npz into a Dataset; without x_val/y_val, val is carved from train.

  class_names default to "0".."K-1", K = largest label + 1.
  """
  path = pathlib.Path(path)
  npz = np.load(path, allow_pickle=False)
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise ValueError(f"{path} is a single .npy array, expected an .npz archive (np.savez)")
  with npz:
    arrays = {k: npz[k] for k in npz.files}
  for key in _REQUIRED:
    if key not in arrays:
      raise KeyError(f"{path} has no key {key!r}; found {sorted(arrays)}, expected "
                     f"{_REQUIRED} (+ optional x_val, y_val, class_names)")
  if ("x_val" in arrays) != ("y_val" in arrays):
    raise KeyError(f"{path}: x_val and y_val must be given together; found {sorted(arrays)}")
  split = {}
  for s in ("train", "val", "test"):
    if f"x_{s}" in arrays:
      x = _inputs(arrays[f"x_{s}"], path, f"x_{s}")
      y = _labels(arrays[f"y_{s}"], path, f"y_{s}")
      if len(x) != len(y):
        raise ValueError(f"{path}: x_{s} has {len(x)} examples but y_{s} has {len(y)}")
      split[s] = (x, y)
  if "val" not in split:
    x, y, x_val, y_val = split_off(*split["train"], val_fraction, seed)
    split["train"], split["val"] = (x, y), (x_val, y_val)
  if "class_names" in arrays:
    class_names = tuple(str(c) for c in arrays["class_names"].ravel())
  else:
    top = max(int(y.max()) for _, y in split.values() if y.size)
    class_names = tuple(str(c) for c in range(top + 1))
  return Dataset(path.stem, *split["train"], *split["val"], *split["test"], class_names)


def _inputs(x: np.ndarray, path: pathlib.Path, key: str) -> np.ndarray:
  """NHWC / NHW / NL uint8 or float -> float32 NHWC."""
  if x.ndim == 2:
    x = x[:, None, :, None]
  elif x.ndim == 3:
    x = x[..., None]
  elif x.ndim != 4:
    raise ValueError(f"{path} {key}: expected NHWC, NHW or NL, got shape {x.shape}")
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  if np.issubdtype(x.dtype, np.floating):
    return x.astype(np.float32)
  raise ValueError(f"{path} {key}: expected uint8 (scaled by 1/255) or float inputs, got "
                   f"{x.dtype}")


def _labels(y: np.ndarray, path: pathlib.Path, key: str) -> np.ndarray:
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{path} {key}: expected integer labels of shape (N,), got {y.dtype} "
                     f"{y.shape}")
  if y.size and y.min() < 0:
    raise ValueError(f"{path} {key}: labels must be >= 0, found {y.min()}")
  return y.astype(np.int32)
