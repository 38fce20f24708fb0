"""Tests for load_npz."""
import numpy as np
import pytest

from jatlas.data import load_npz


def _arrays(rng, x_shape=(20, 4, 5), dtype=np.uint8):
  x = lambda n: rng.integers(0, 256, (n, *x_shape[1:])).astype(dtype)
  return dict(x_train=x(x_shape[0]), y_train=np.arange(x_shape[0]) % 4,
              x_test=x(8), y_test=np.arange(8) % 4)


def test_nhw_uint8_gets_channel_and_scale(tmp_path):
  a = _arrays(np.random.default_rng(0))
  np.savez(tmp_path / "toy.npz", **a)
  ds = load_npz(tmp_path / "toy.npz", val_fraction=0.2)
  assert ds.name == "toy"
  assert ds.input_shape == (4, 5, 1)
  assert ds.class_names == ("0", "1", "2", "3")
  np.testing.assert_array_equal(ds.x_test[..., 0], a["x_test"] / np.float32(255))
  np.testing.assert_array_equal(ds.y_test, a["y_test"])
  assert (len(ds.y_train), len(ds.y_val)) == (16, 4)
  np.testing.assert_array_equal(np.bincount(ds.y_val), [1, 1, 1, 1])


def test_nhwc_float_with_val_and_names(tmp_path):
  rng = np.random.default_rng(1)
  a = _arrays(rng, (12, 3, 3, 2), np.float64)
  a.update(x_val=rng.normal(size=(5, 3, 3, 2)), y_val=np.array([0, 1, 2, 3, 4]),
           class_names=np.array(["a", "b", "c", "d", "e"]))
  np.savez(tmp_path / "f.npz", **a)
  ds = load_npz(tmp_path / "f.npz")
  assert ds.class_names == ("a", "b", "c", "d", "e")
  assert ds.input_shape == (3, 3, 2)
  # A given val split is used as is, and train is not reshuffled.
  np.testing.assert_array_equal(ds.x_train, a["x_train"].astype(np.float32))
  np.testing.assert_array_equal(ds.x_val, a["x_val"].astype(np.float32))
  np.testing.assert_array_equal(ds.y_val, [0, 1, 2, 3, 4])


def test_signals_become_1_by_l(tmp_path):
  rng = np.random.default_rng(2)
  np.savez(tmp_path / "s.npz", x_train=rng.normal(size=(10, 40)).astype(np.float32),
           y_train=np.arange(10) % 2, x_test=rng.normal(size=(4, 40)), y_test=[0, 1, 0, 1])
  ds = load_npz(tmp_path / "s.npz", val_fraction=0.0)
  assert ds.input_shape == (1, 40, 1)


@pytest.mark.parametrize("drop", ["x_train", "y_train", "x_test", "y_test"])
def test_missing_key_is_named(tmp_path, drop):
  a = _arrays(np.random.default_rng(0))
  del a[drop]
  np.savez(tmp_path / "m.npz", **a)
  with pytest.raises(KeyError, match=f"m.npz has no key '{drop}'"):
    load_npz(tmp_path / "m.npz")


def test_val_pair_required(tmp_path):
  a = _arrays(np.random.default_rng(0))
  np.savez(tmp_path / "v.npz", x_val=a["x_test"], **a)
  with pytest.raises(KeyError, match="x_val and y_val must be given together"):
    load_npz(tmp_path / "v.npz")


@pytest.mark.parametrize("change, message", [
    (dict(x_test=np.zeros((8, 4, 5), np.int64)), "x_test: expected uint8.*or float.*int64"),
    (dict(x_test=np.zeros((8, 4, 5, 1, 1), np.uint8)), r"x_test: expected NHWC.*\(8, 4, 5, 1, 1"),
    (dict(y_train=np.zeros((20, 1), np.int64)), r"y_train: expected integer labels of shape"),
    (dict(y_train=np.full(20, 0.5)), "y_train: expected integer labels"),
    (dict(y_test=-np.ones(8, int)), "y_test: labels must be >= 0"),
    (dict(y_test=np.zeros(7, int)), "x_test has 8 examples but y_test has 7"),
])
def test_rejects_bad_arrays(tmp_path, change, message):
  a = _arrays(np.random.default_rng(0))
  a.update(change)
  np.savez(tmp_path / "b.npz", **a)
  with pytest.raises(ValueError, match=message):
    load_npz(tmp_path / "b.npz")


def test_rejects_npy(tmp_path):
  np.save(tmp_path / "a.npy", np.zeros(3))
  with pytest.raises(ValueError, match="a.npy is a single .npy array"):
    load_npz(tmp_path / "a.npy")
