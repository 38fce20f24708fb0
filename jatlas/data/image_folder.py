"""Reader for class-per-folder image trees such as ImageNette.

Layout: root/<split>/<class>/*.JPEG|jpg|png. ImageNette ships "train" and "val";
its "val" split becomes the *test* split here and val is carved from train.

Usage:
  ds = load_image_folder("imagenette2-320")   # x_* (N, 32, 32, 3) in [0, 1]
"""
import os
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image

from jatlas.data.dataset import Dataset, split_off

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_MODES = {1: "L", 3: "RGB"}


def load_image_folder(root: str | os.PathLike, size: int = 32, channels: int = 3,
                      splits: Sequence[str] = ("train", "val"), val_fraction: float = 0.1,
                      seed: int = 0) -> Dataset:
  """Reads root/<split>/<class>/<image> into float32 (N, size, size, channels) in [0, 1].

  Args:
    root: folder holding the split folders.
    size: images are resized (PIL bilinear, aspect ratio not kept) to size x size.
    channels: 3 (RGB) or 1 (grayscale).
    splits: (train folder, test folder); ImageNette's "val" folder is the test split.
    val_fraction, seed: val is carved from train, stratified, random_state=seed.

  Class names are the sorted class folder names of the train split; a test class
  folder must be one of them.
  """
  if channels not in _MODES:
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  if len(splits) != 2:
    raise ValueError(f"splits must name (train folder, test folder), got {splits!r}")
  root = pathlib.Path(root)
  train_dir, test_dir = root / splits[0], root / splits[1]
  class_names = tuple(d.name for d in _class_dirs(train_dir))
  x_train, y_train = _read_split(train_dir, class_names, size, _MODES[channels])
  x_test, y_test = _read_split(test_dir, class_names, size, _MODES[channels])
  x_train, y_train, x_val, y_val = split_off(x_train, y_train, val_fraction, seed)
  return Dataset(root.name, x_train, y_train, x_val, y_val, x_test, y_test, class_names)


def _class_dirs(split_dir: pathlib.Path) -> list[pathlib.Path]:
  if not split_dir.is_dir():
    raise FileNotFoundError(f"split folder {split_dir} not found; expected the layout "
                            "root/<split>/<class>/<image>")
  dirs = sorted((d for d in split_dir.iterdir() if d.is_dir()), key=lambda d: d.name)
  if not dirs:
    raise ValueError(f"split folder {split_dir} has no class folders")
  return dirs


def _read_split(split_dir: pathlib.Path, class_names: tuple[str, ...], size: int,
                mode: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (x_NHWC float32, y_N int32) in class-then-file-name order."""
  images, labels = [], []
  for class_dir in _class_dirs(split_dir):
    if class_dir.name not in class_names:
      raise ValueError(f"class folder {class_dir} is not among the train classes "
                       f"{class_names}")
    files = sorted(p for p in class_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
      raise ValueError(f"class folder {class_dir} has no images ({'/'.join(IMAGE_SUFFIXES)})")
    images.extend(_read_image(p, size, mode) for p in files)
    labels.extend([class_names.index(class_dir.name)] * len(files))
  x = np.stack(images).astype(np.float32) / 255.0
  return x.reshape(len(images), size, size, -1), np.asarray(labels, np.int32)


def _read_image(path: pathlib.Path, size: int, mode: str) -> np.ndarray:
  """Decodes one image to uint8 (size, size[, C])."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
  except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for broken files
    raise ValueError(f"cannot decode image {path}: {e}") from e
