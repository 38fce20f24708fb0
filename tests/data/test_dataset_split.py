"""Tests for the Dataset container and split_off."""
import numpy as np
import pytest

from jatlas.data import Dataset, split_off


def _toy(**overrides):
  fields = dict(
      name="toy",
      x_train=np.zeros((5, 2, 3, 1), np.float32), y_train=np.array([0, 1, 2, 1, 0], np.int32),
      x_val=np.zeros((0, 2, 3, 1), np.float32), y_val=np.zeros((0,), np.int32),
      x_test=np.ones((2, 2, 3, 1), np.float32), y_test=np.array([2, 2], np.int32),
      class_names=["a", "b", "c"])
  fields.update(overrides)
  return Dataset(**fields)


def test_dataset_properties():
  ds = _toy()
  assert ds.class_names == ("a", "b", "c")
  assert ds.num_classes == 3
  assert ds.input_shape == (2, 3, 1)
  x, y = ds.split("test")
  assert x is ds.x_test and y is ds.y_test
  assert ds.split("val")[0].shape == (0, 2, 3, 1)
  assert repr(ds) == ("Dataset('toy', input_shape=(2, 3, 1), num_classes=3, "
                      "train=5, val=0, test=2)")


def test_dataset_unknown_split():
  with pytest.raises(ValueError, match="unknown split 'dev'"):
    _toy().split("dev")


@pytest.mark.parametrize("overrides, message", [
    (dict(x_train=np.zeros((5, 2, 3, 1), np.float64)), "'train'.*float32"),
    (dict(x_test=np.ones((2, 2, 3), np.float32)), "'test'.*float32 NHWC"),
    (dict(y_train=np.array([0, 1, 2, 1, 0], np.int64)), "'train'.*int32"),
    (dict(y_test=np.array([2], np.int32)), "'test': 2 inputs but 1 labels"),
    (dict(x_test=np.ones((2, 3, 2, 1), np.float32)), r"input shape \(3, 2, 1\) differs"),
    (dict(y_test=np.array([2, 3], np.int32)), r"labels span \[2, 3\], expected \[0, 3\)"),
    (dict(y_train=np.array([0, -1, 2, 1, 0], np.int32)), "labels span"),
    (dict(class_names=()), "class_names is empty"),
])
def test_dataset_rejects_bad_fields(overrides, message):
  with pytest.raises(ValueError, match=message):
    _toy(**overrides)


def test_split_off_is_stratified_and_complete():
  y = np.repeat(np.arange(4), [40, 30, 20, 10]).astype(np.int32)
  x = np.arange(len(y))[:, None]
  x_keep, y_keep, x_out, y_out = split_off(x, y, 0.2, seed=3)
  assert len(y_out) == 20 and len(y_keep) == 80
  np.testing.assert_array_equal(np.bincount(y_out), [8, 6, 4, 2])
  # Every example lands on exactly one side with its own label.
  ids = np.concatenate([x_keep[:, 0], x_out[:, 0]])
  np.testing.assert_array_equal(np.sort(ids), np.arange(100))
  np.testing.assert_array_equal(y[x_out[:, 0]], y_out)
  np.testing.assert_array_equal(y[x_keep[:, 0]], y_keep)


def test_split_off_deterministic_in_seed():
  y = np.arange(50) % 5
  x = np.arange(50)
  a, b, c = (split_off(x, y, 0.3, seed) for seed in (0, 0, 1))
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert set(a[2]) != set(c[2])


def test_split_off_zero_fraction_keeps_everything():
  x, y = np.arange(6), np.arange(6) % 2
  x_keep, y_keep, x_out, y_out = split_off(x, y, 0.0, 0)
  np.testing.assert_array_equal(x_keep, x)
  assert x_out.shape == (0,) and y_out.shape == (0,)


def test_split_off_tiny_data_falls_back_to_plain_shuffle():
  # 3 classes but only 1 held-out example: stratifying is impossible.
  x, y = np.arange(6), np.array([0, 0, 1, 1, 2, 2])
  x_keep, _, x_out, y_out = split_off(x, y, 0.1, 0)
  assert len(x_out) == 1 and len(x_keep) == 5
  assert y_out[0] == y[x_out[0]]


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_split_off_rejects_bad_fraction(fraction):
  with pytest.raises(ValueError, match="fraction must be in"):
    split_off(np.arange(10), np.arange(10) % 2, fraction, 0)


def test_split_off_rejects_emptying_the_kept_part():
  with pytest.raises(ValueError, match="nothing would be left"):
    split_off(np.arange(1), np.zeros(1, int), 0.5, 0)
