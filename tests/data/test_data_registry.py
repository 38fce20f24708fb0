"""Tests for the dataset registry."""
import numpy as np
import pytest

from jatlas import data


def test_known_names():
  assert set(data.LOADERS) == {"digits", "mnist1d", "image_folder", "cifar10", "mnist_idx",
                               "npz"}


def test_load_passes_kwargs(tmp_path):
  ds = data.load("digits", size=16, seed=3)
  ref = data.load_digits(size=16, seed=3)
  np.testing.assert_array_equal(ds.x_test, ref.x_test)
  np.savez(tmp_path / "t.npz", x_train=np.zeros((4, 2, 2)), y_train=[0, 1, 0, 1],
           x_test=np.zeros((2, 2, 2)), y_test=[0, 1])
  assert data.load("npz", path=tmp_path / "t.npz", val_fraction=0.0).name == "t"


def test_unknown_name_lists_known():
  with pytest.raises(ValueError, match="unknown dataset 'mnist'; known: digits, mnist1d, "
                                       "image_folder, cifar10, mnist_idx, npz"):
    data.load("mnist")
