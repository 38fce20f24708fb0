"""Tests for load_mnist1d (offline regeneration)."""
import random
import socket

import numpy as np
import pytest

from jatlas.data import load_mnist1d


@pytest.fixture(scope="module")
def ds():
  return load_mnist1d()


def test_default_shapes_and_classes(ds):
  assert ds.name == "mnist1d"
  assert ds.input_shape == (1, 40, 1)
  assert ds.x_train.shape == (3600, 1, 40, 1)
  assert ds.x_val.shape == (400, 1, 40, 1)
  assert ds.x_test.shape == (1000, 1, 40, 1)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 10
  for _, y in map(ds.split, ("train", "val", "test")):
    assert set(np.unique(y)) == set(range(10))
  # 500 generated per class in total.
  all_y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
  np.testing.assert_array_equal(np.bincount(all_y), [500] * 10)


def test_whole_set_is_standardised(ds):
  # make_dataset centres and scales the full set before cutting train/test.
  x = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).astype(np.float64)
  assert abs(x.mean()) < 1e-5
  assert abs(x.std() - 1.0) < 1e-5


def test_val_is_stratified(ds):
  counts = np.bincount(ds.y_val, minlength=10)
  expected = np.bincount(np.concatenate([ds.y_train, ds.y_val])) * 0.1
  assert np.all(np.abs(counts - expected) <= 1.5), counts


def test_deterministic_in_seed():
  a, b, c = load_mnist1d(500), load_mnist1d(500), load_mnist1d(500, seed=1)
  assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (360, 40, 100)
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(a.split(split)[0], b.split(split)[0])
    np.testing.assert_array_equal(a.split(split)[1], b.split(split)[1])
  assert not np.allclose(a.x_test, c.x_test)


def test_leaves_global_rngs_alone():
  np.random.seed(123)
  random.seed(123)
  expected = (np.random.rand(), random.random())
  np.random.seed(123)
  random.seed(123)
  load_mnist1d(100)
  assert (np.random.rand(), random.random()) == expected


def test_never_downloads(monkeypatch):
  import mnist1d.data

  def forbidden(*args, **kwargs):
    raise AssertionError("network or get_dataset used")

  monkeypatch.setattr(mnist1d.data, "get_dataset", forbidden)
  monkeypatch.setattr(socket.socket, "connect", forbidden)
  assert load_mnist1d(100).x_test.shape == (20, 1, 40, 1)


@pytest.mark.parametrize("n", [0, 95])
def test_rejects_bad_num_samples(n):
  with pytest.raises(ValueError, match="multiple of 10"):
    load_mnist1d(n)
