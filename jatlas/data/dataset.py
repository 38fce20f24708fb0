"""The Dataset container and the deterministic split that carves val/test sets.

Usage:
  ds = Dataset("toy", x_tr, y_tr, x_va, y_va, x_te, y_te, ("cat", "dog"))
  x_NHWC, y_N = ds.split("train")
  x_keep, y_keep, x_val, y_val = split_off(x, y, fraction=0.1, seed=0)
"""
import dataclasses
import math

import numpy as np

SPLITS = ("train", "val", "test")


# eq=False: comparing arrays elementwise has no single truth value.
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
  """Images or 1-D signals with integer labels in fixed train/val/test splits.

  x_* are float32 NHWC, e.g. (N, 8, 8, 1); a 1-D signal of length L is (N, 1, L, 1).
  y_* are int32 (N,) with values in [0, len(class_names)). Splits may be empty.
  """
  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  class_names: tuple[str, ...]

  def __post_init__(self):
    object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
    if not self.class_names:
      raise ValueError(f"Dataset {self.name!r}: class_names is empty")
    for split in SPLITS:
      self._check_split(split)

  def _check_split(self, split: str):
    x, y = self.split(split)
    where = f"Dataset {self.name!r} split {split!r}"
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
      raise ValueError(f"{where}: x must be a float32 NHWC np.ndarray, got "
                       f"{type(x).__name__} {getattr(x, 'dtype', '')} {np.shape(x)}")
    if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.ndim != 1:
      raise ValueError(f"{where}: y must be an int32 (N,) np.ndarray, got "
                       f"{type(y).__name__} {getattr(y, 'dtype', '')} {np.shape(y)}")
    if len(x) != len(y):
      raise ValueError(f"{where}: {len(x)} inputs but {len(y)} labels")
    if x.shape[1:] != self.x_train.shape[1:]:
      raise ValueError(f"{where}: input shape {x.shape[1:]} differs from train "
                       f"{self.x_train.shape[1:]}")
    if y.size and (y.min() < 0 or y.max() >= self.num_classes):
      raise ValueError(f"{where}: labels span [{y.min()}, {y.max()}], expected "
                       f"[0, {self.num_classes}) for {self.num_classes} class names")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of one example."""
    return tuple(self.x_train.shape[1:])

  def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (x_NHWC, y_N) of split "train", "val" or "test"."""
    if name not in SPLITS:
      raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

  def __repr__(self) -> str:
    sizes = ", ".join(f"{s}={len(self.split(s)[1])}" for s in SPLITS)
    return (f"Dataset({self.name!r}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, {sizes})")


def split_off(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
  """Moves `fraction` of the examples into a held-out part, stratified by label.

  Args:
    x: [N, ...] inputs.
    y: [N] integer labels.
    fraction: share of N held out, in [0, 1); the held-out size is ceil(fraction * N).
    seed: random_state of sklearn's train_test_split.

  Returns:
    (x_keep, y_keep, x_out, y_out), both parts in seeded shuffled order (for
    fraction 0, the input unchanged and an empty held-out part).
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
  if fraction == 0.0:
    return x, y, x[:0], y[:0]
  from sklearn import model_selection  # here: importing sklearn takes ~1.5 s
  n = len(y)
  n_out = math.ceil(fraction * n)  # the rounding train_test_split applies
  if n_out >= n:
    raise ValueError(f"cannot hold out {fraction} of {n} examples: nothing would be "
                     "left to train on")
  _, counts = np.unique(y, return_counts=True)
  # Stratifying needs every class on both sides; tiny user data may not allow it.
  stratify = y if counts.min() >= 2 and min(n_out, n - n_out) >= len(counts) else None
  x_keep, x_out, y_keep, y_out = model_selection.train_test_split(
      x, y, test_size=n_out, random_state=seed, stratify=stratify)
  return x_keep, y_keep, x_out, y_out
