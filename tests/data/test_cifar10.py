"""Tests for load_cifar10 on tiny pickles laid out like cifar-10-batches-py."""
import pickle

import numpy as np
import pytest

from jatlas.data import load_cifar10

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
         b"ship", b"truck"]


def _batch(n, seed, label_name=b"training batch 1 of 5"):
  rng = np.random.default_rng(seed)
  return {
      b"batch_label": label_name,
      b"labels": [int(v) for v in rng.integers(0, 10, n)],  # a list, as in the real files
      b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
      b"filenames": [f"img_{i}.png".encode() for i in range(n)],
  }


def _dump(obj, path):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=2)


@pytest.fixture
def folder(tmp_path):
  root = tmp_path / "cifar-10-batches-py"
  root.mkdir()
  batches = {f"data_batch_{i}": _batch(30, seed=i) for i in (1, 2)}
  test = _batch(12, seed=9, label_name=b"testing batch 1 of 1")
  # Known pixel: test image 3, row 5, column 7, green channel.
  test[b"data"][3, 1 * 1024 + 5 * 32 + 7] = 201
  for name, batch in batches.items():
    _dump(batch, root / name)
  _dump(test, root / "test_batch")
  _dump({b"num_cases_per_batch": 30, b"label_names": NAMES, b"num_vis": 3072},
        root / "batches.meta")
  return root, batches, test


def _reference_NHWC(data):
  """Channel-major rows -> NHWC by explicit index arithmetic: c * 1024 + h * 32 + w."""
  h, w, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
  return data[:, c * 1024 + h * 32 + w].astype(np.float32) / 255


def test_reads_batches(folder):
  root, batches, test = folder
  ds = load_cifar10(root)
  assert ds.name == "cifar10"
  assert ds.class_names == tuple(n.decode() for n in NAMES)
  assert ds.input_shape == (32, 32, 3)
  assert ds.x_test.dtype == np.float32 and ds.y_test.dtype == np.int32
  assert ds.x_test[3, 5, 7, 1] == np.float32(201 / 255)
  np.testing.assert_array_equal(ds.x_test, _reference_NHWC(test[b"data"]))
  np.testing.assert_array_equal(ds.y_test, test[b"labels"])
  # 60 training rows: 6 go to val, the rest stay in train, each with its own label.
  assert (len(ds.y_train), len(ds.y_val)) == (54, 6)
  data = np.concatenate([b[b"data"] for b in batches.values()])
  labels = np.concatenate([b[b"labels"] for b in batches.values()])
  expected = sorted((x.tobytes(), y) for x, y in zip(_reference_NHWC(data), labels))
  got = sorted((x.tobytes(), y) for x, y in zip(np.concatenate([ds.x_train, ds.x_val]),
                                                np.concatenate([ds.y_train, ds.y_val])))
  assert got == expected


def test_deterministic_val(folder):
  root, _, _ = folder
  a, b, c = load_cifar10(root), load_cifar10(root), load_cifar10(root, seed=5)
  np.testing.assert_array_equal(a.x_val, b.x_val)
  assert not np.array_equal(a.x_val, c.x_val)


def test_single_batch(folder):
  root, _, _ = folder
  (root / "data_batch_2").unlink()
  ds = load_cifar10(root, val_fraction=0.0)
  assert len(ds.y_train) == 30 and len(ds.y_val) == 0


def test_no_training_batches(folder):
  root, _, _ = folder
  for i in (1, 2):
    (root / f"data_batch_{i}").unlink()
  with pytest.raises(FileNotFoundError, match="data_batch_1..5"):
    load_cifar10(root)


def test_missing_test_batch(folder):
  root, _, _ = folder
  (root / "test_batch").unlink()
  with pytest.raises(FileNotFoundError, match="test_batch"):
    load_cifar10(root)


def test_bad_row_length(folder):
  root, _, _ = folder
  bad = _batch(4, 0)
  bad[b"data"] = bad[b"data"][:, :3000]
  _dump(bad, root / "data_batch_2")
  with pytest.raises(ValueError, match=r"data_batch_2: b'data' must be uint8 \(N, 3072\)"):
    load_cifar10(root)


def test_missing_key(folder):
  root, _, _ = folder
  bad = _batch(4, 0)
  del bad[b"labels"]
  _dump(bad, root / "data_batch_1")
  with pytest.raises(KeyError, match="data_batch_1 has no key b'labels'"):
    load_cifar10(root)


def test_label_count_mismatch(folder):
  root, _, _ = folder
  bad = _batch(4, 0)
  bad[b"labels"] = bad[b"labels"][:3]
  _dump(bad, root / "test_batch")
  with pytest.raises(ValueError, match="test_batch: 4 images but b'labels'"):
    load_cifar10(root)
