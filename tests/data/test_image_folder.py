"""Tests for load_image_folder on a tiny ImageNette-style tree written with PIL."""
import numpy as np
import pytest
from PIL import Image

from jatlas.data import load_image_folder

# Solid colours per class, so every decoded image reveals its true class.
COLOURS = {"n01440764": (200, 30, 30), "n02102040": (30, 200, 30), "n02979186": (30, 30, 200)}
CLASSES = tuple(sorted(COLOURS))


def _write(path, colour, size=(40, 30), fmt=None):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, colour).save(path, format=fmt)


@pytest.fixture
def tree(tmp_path):
  """root/{train,val}/<wnid>/ with PNG, .JPEG and .jpg files, 4 train + 2 val per class."""
  root = tmp_path / "imagenette2-320"
  for wnid, colour in COLOURS.items():
    for i in range(4):
      suffix = (".JPEG", ".png", ".jpg", ".png")[i]
      _write(root / "train" / wnid / f"img{i}{suffix}", colour,
             fmt="JPEG" if suffix != ".png" else "PNG")
    _write(root / "val" / wnid / "a.JPEG", colour, fmt="JPEG")
    _write(root / "val" / wnid / "b.png", colour, fmt="PNG")
  (root / "train" / CLASSES[0] / "notes.txt").write_text("not an image, ignored")
  return root


def _class_of(x_NHWC):
  """Nearest class colour of each (nearly solid) image."""
  mean_NC = x_NHWC.mean(axis=(1, 2)) * 255
  colours_KC = np.array([COLOURS[c] for c in CLASSES])
  return np.argmin(((mean_NC[:, None] - colours_KC[None]) ** 2).sum(-1), axis=1)


def test_reads_tree(tree):
  ds = load_image_folder(tree, size=8, val_fraction=0.25)
  assert ds.name == "imagenette2-320"
  assert ds.class_names == CLASSES
  assert ds.input_shape == (8, 8, 3)
  assert ds.x_train.dtype == np.float32
  # 12 train images -> 3 val (stratified, one per class) + 9 train; "val" folder = test.
  assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (9, 3, 6)
  np.testing.assert_array_equal(np.bincount(ds.y_val), [1, 1, 1])
  np.testing.assert_array_equal(ds.y_test, [0, 0, 1, 1, 2, 2])
  for x, y in map(ds.split, ("train", "val", "test")):
    np.testing.assert_array_equal(_class_of(x), y)
    # Solid colours survive resizing; JPEG may move them by a few levels.
    expected = np.array([COLOURS[CLASSES[k]] for k in y])[:, None, None, :] / 255
    np.testing.assert_allclose(x, np.broadcast_to(expected, x.shape), atol=4 / 255)


def test_png_pixels_exact_and_grayscale(tree):
  ds = load_image_folder(tree, size=5, channels=1, splits=("train", "val"), val_fraction=0.0)
  assert ds.input_shape == (5, 5, 1)
  png = ds.x_test[1::2]  # b.png of each class, in class order
  for k, x in enumerate(png):
    r, g, b = COLOURS[CLASSES[k]]
    # ITU-R 601-2 luma, what PIL's "L" conversion computes.
    luma = round((r * 299 + g * 587 + b * 114) / 1000)
    np.testing.assert_allclose(x, luma / 255, atol=1 / 255 + 1e-6)


def test_orientation_is_height_width(tmp_path):
  root = tmp_path / "root"
  img = np.zeros((30, 60, 3), np.uint8)  # 30 high, 60 wide
  img[:, :30] = 255  # left half white
  for split in ("train", "val"):
    for cls in ("a", "b"):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(2):
        Image.fromarray(img).save(d / f"{i}.png")
  ds = load_image_folder(root, size=8, val_fraction=0.0)
  x = ds.x_test[0, ..., 0]
  np.testing.assert_allclose(x[:, :3], 1.0)
  np.testing.assert_allclose(x[:, 5:], 0.0)


def test_missing_split_folder(tree):
  with pytest.raises(FileNotFoundError, match="imagenette2-320/test"):
    load_image_folder(tree, splits=("train", "test"))


def test_empty_class_folder(tree):
  (tree / "val" / CLASSES[1]).joinpath("a.JPEG").unlink()
  (tree / "val" / CLASSES[1]).joinpath("b.png").unlink()
  with pytest.raises(ValueError, match=f"class folder .*val/{CLASSES[1]} has no images"):
    load_image_folder(tree)


def test_unknown_test_class(tree):
  _write(tree / "val" / "n99999999" / "x.png", (0, 0, 0), fmt="PNG")
  with pytest.raises(ValueError, match="n99999999 is not among the train classes"):
    load_image_folder(tree)


def test_undecodable_image_is_named(tree):
  (tree / "train" / CLASSES[2] / "broken.png").write_bytes(b"not a png at all")
  with pytest.raises(ValueError, match=f"cannot decode image .*{CLASSES[2]}/broken.png"):
    load_image_folder(tree)


def test_truncated_jpeg_is_named(tree):
  good = tree / "val" / CLASSES[0] / "a.JPEG"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
      good, format="JPEG")
  data = good.read_bytes()
  good.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=f"cannot decode image .*{CLASSES[0]}/a.JPEG"):
    load_image_folder(tree)


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=2), "channels must be 1 or 3"),
    (dict(splits=("train",)), "splits must name"),
])
def test_rejects_bad_arguments(tree, kwargs, message):
  with pytest.raises(ValueError, match=message):
    load_image_folder(tree, **kwargs)
