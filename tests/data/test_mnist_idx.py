"""Tests for the IDX parser and load_mnist_idx on files written with struct."""
import gzip
import struct

import numpy as np
import pytest

from jatlas.data import load_mnist_idx, read_idx


def _idx_bytes(array, code):
  """IDX encoding written independently of the reader: magic, big-endian dims, data."""
  fmt = {0x08: "B", 0x09: "b", 0x0B: "h", 0x0C: "i", 0x0D: "f", 0x0E: "d"}[code]
  header = struct.pack(">BBBB", 0, 0, code, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  flat = array.ravel().tolist()
  return header + struct.pack(f">{len(flat)}{fmt}", *flat)


def _write(path, array, code=0x08, gz=False):
  data = _idx_bytes(array, code)
  if gz:
    path = path.with_name(path.name + ".gz")
    data = gzip.compress(data)
  path.write_bytes(data)
  return path


@pytest.fixture
def raw():
  rng = np.random.default_rng(0)
  return {
      "train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
      "train-labels-idx1-ubyte": np.arange(40, dtype=np.uint8) % 10,
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
      "t10k-labels-idx1-ubyte": rng.permutation(10).astype(np.uint8),
  }


@pytest.mark.parametrize("gz", [False, True, "mixed"])
def test_reads_plain_and_gz(tmp_path, raw, gz):
  for i, (name, array) in enumerate(raw.items()):
    _write(tmp_path / name, array, gz=bool(i % 2) if gz == "mixed" else gz)
  ds = load_mnist_idx(tmp_path, val_fraction=0.25)
  assert ds.name == "mnist"
  assert ds.class_names == tuple(str(c) for c in range(10))
  assert ds.input_shape == (28, 28, 1)
  assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (30, 10, 10)
  test_bytes = _idx_bytes(raw["t10k-images-idx3-ubyte"], 0x08)
  # Image 4, row 3, column 17 sits at byte 16 + 4 * 784 + 3 * 28 + 17.
  assert ds.x_test[4, 3, 17, 0] == np.float32(test_bytes[16 + 4 * 784 + 3 * 28 + 17] / 255)
  np.testing.assert_array_equal(ds.x_test[..., 0] * 255,
                                raw["t10k-images-idx3-ubyte"].astype(np.float32))
  np.testing.assert_array_equal(ds.y_test, raw["t10k-labels-idx1-ubyte"])
  np.testing.assert_array_equal(np.bincount(ds.y_val), [1] * 10)  # stratified
  train = np.concatenate([ds.x_train, ds.x_val])[..., 0] * 255
  labels = np.concatenate([ds.y_train, ds.y_val])
  got = sorted((x.round().astype(np.uint8).tobytes(), y) for x, y in zip(train, labels))
  want = sorted((x.tobytes(), y) for x, y in zip(raw["train-images-idx3-ubyte"],
                                                 raw["train-labels-idx1-ubyte"]))
  assert got == want


@pytest.mark.parametrize("code, dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                         (0x0D, np.float32), (0x0E, np.float64)])
def test_read_idx_other_types_big_endian(tmp_path, code, dtype):
  array = np.array([[-3, 2, 1000 if dtype != np.int8 else 100], [7, -128, 0]], dtype)
  path = _write(tmp_path / "a.idx", array, code)
  out = read_idx(path)
  assert out.dtype == np.dtype(dtype) and out.dtype.isnative
  np.testing.assert_array_equal(out, array)


def test_truncated_file_names_file_and_counts(tmp_path, raw):
  path = _write(tmp_path / "train-images-idx3-ubyte", raw["train-images-idx3-ubyte"])
  path.write_bytes(path.read_bytes()[:-5])
  expected = 16 + 40 * 28 * 28
  with pytest.raises(ValueError, match=(f"train-images-idx3-ubyte: IDX file truncated: "
                                        f"expected {expected} bytes.*found {expected - 5}")):
    read_idx(path)


def test_truncated_header(tmp_path):
  path = tmp_path / "x-idx3-ubyte"
  path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 3, 5))
  with pytest.raises(ValueError, match="x-idx3-ubyte: truncated IDX header: expected 16"):
    read_idx(path)


def test_trailing_bytes(tmp_path):
  path = _write(tmp_path / "l", np.arange(5, dtype=np.uint8))
  path.write_bytes(path.read_bytes() + b"\0")
  with pytest.raises(ValueError, match="trailing bytes: expected 13 bytes.*found 14"):
    read_idx(path)


def test_bad_magic(tmp_path):
  path = tmp_path / "bad"
  path.write_bytes(struct.pack(">I", 0x01000803) + bytes(12))
  with pytest.raises(ValueError, match="bad: bad IDX magic number 0x01000803"):
    read_idx(path)


def test_corrupt_gzip(tmp_path, raw):
  path = _write(tmp_path / "t10k-labels-idx1-ubyte", raw["t10k-labels-idx1-ubyte"], gz=True)
  path.write_bytes(path.read_bytes()[:-12])
  with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: corrupt gzip"):
    read_idx(path)


def test_missing_file(tmp_path, raw):
  for name, array in raw.items():
    if name != "t10k-labels-idx1-ubyte":
      _write(tmp_path / name, array)
  with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte \(or .gz\)"):
    load_mnist_idx(tmp_path)


def test_count_mismatch(tmp_path, raw):
  raw["t10k-labels-idx1-ubyte"] = raw["t10k-labels-idx1-ubyte"][:9]
  for name, array in raw.items():
    _write(tmp_path / name, array)
  with pytest.raises(ValueError, match="has 10 images but .*t10k-labels-idx1-ubyte has 9"):
    load_mnist_idx(tmp_path)


def test_labels_file_swapped_for_images(tmp_path, raw):
  raw["train-images-idx3-ubyte"] = raw["train-labels-idx1-ubyte"]
  for name, array in raw.items():
    _write(tmp_path / name, array)
  with pytest.raises(ValueError, match="train-images-idx3-ubyte: expected 3-D ubyte images"):
    load_mnist_idx(tmp_path)


def test_custom_class_names(tmp_path, raw):
  for name, array in raw.items():
    _write(tmp_path / name, array)
  names = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
  assert load_mnist_idx(tmp_path, class_names=names).class_names == names
