"""Tests for load_digits against sklearn's raw data and protocol."""
import numpy as np
import pytest
from sklearn import datasets, model_selection

from jatlas.data import load_digits


@pytest.fixture(scope="module")
def raw():
  return datasets.load_digits()


@pytest.fixture(scope="module")
def ds():
  return load_digits()


def _rows(x, y):
  """Multiset of (image bytes, label) rows, order-free."""
  return sorted((xi.tobytes(), int(yi)) for xi, yi in zip(x, y))


def test_shapes_dtypes_and_sizes(ds):
  assert ds.name == "digits"
  assert ds.input_shape == (8, 8, 1)
  assert ds.class_names == tuple(str(c) for c in range(10))
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  # test = ceil(0.2 * 1797); val = ceil(0.1 * the remaining 1437).
  assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1293, 144, 360)


def test_splits_partition_the_real_data(ds, raw):
  x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
  y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
  assert len(y) == 1797
  expected_x = (raw.images / 16.0).astype(np.float32)[..., None]
  assert _rows(x, y) == _rows(expected_x, raw.target)
  assert x.min() == 0.0 and x.max() == 1.0


def test_splits_are_stratified(ds, raw):
  per_class = np.bincount(raw.target)
  for y, n in ((ds.y_test, 360), (ds.y_val, 144), (ds.y_train, 1293)):
    counts = np.bincount(y, minlength=10)
    # Stratified splitting allocates class k about n * p_k examples.
    assert np.all(np.abs(counts - per_class * n / 1797) <= 1.5), counts


def test_test_split_matches_the_sklearn_protocol(ds, raw):
  # The usual stratified 80/20 split with random_state=0.
  _, x_test, _, y_test = model_selection.train_test_split(
      raw.images / 16.0, raw.target, test_size=0.2, stratify=raw.target, random_state=0)
  np.testing.assert_array_equal(ds.y_test, y_test)
  np.testing.assert_allclose(ds.x_test[..., 0], x_test, rtol=0, atol=1e-7)


def test_deterministic_in_seed(ds):
  again = load_digits()
  other = load_digits(seed=1)
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(ds.split(split)[0], again.split(split)[0])
    np.testing.assert_array_equal(ds.split(split)[1], again.split(split)[1])
  assert not np.array_equal(ds.y_test, other.y_test)
  assert _rows(ds.x_test, ds.y_test) != _rows(other.x_test, other.y_test)


def test_fractions(raw):
  ds = load_digits(val_fraction=0.0, test_fraction=0.5)
  assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (898, 0, 899)
  assert ds.x_val.shape == (0, 8, 8, 1)


def _bilinear_matrix(n_in, n_out):
  """[n_out, n_in] half-pixel-centre bilinear weights with edge clamping."""
  src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  m = np.zeros((n_out, n_in))
  np.add.at(m, (np.arange(n_out), lo), 1 - (src - lo))
  np.add.at(m, (np.arange(n_out), hi), src - lo)
  return m


@pytest.mark.parametrize("size", [16, 32])
def test_resize_matches_numpy_bilinear(ds, size):
  big = load_digits(size=size)
  assert big.name == f"digits_{size}px"
  assert big.input_shape == (size, size, 1)
  assert big.x_train.dtype == np.float32
  assert big.x_train.min() >= 0.0 and big.x_train.max() <= 1.0
  # The split depends on labels and seed only, so rows line up with the 8 px set.
  np.testing.assert_array_equal(big.y_test, ds.y_test)
  m = _bilinear_matrix(8, size)
  expected = np.einsum("ph,nhw,qw->npq", m, ds.x_test[..., 0].astype(np.float64), m)
  np.testing.assert_allclose(big.x_test[..., 0], expected, rtol=0, atol=1e-5)


def test_rejects_bad_size():
  with pytest.raises(ValueError, match="positive int"):
    load_digits(size=0)
