"""StatNN features against NumPy formulas; the linear task probe on separable data."""
import numpy as np

from jatlas.weights import member_split, statnn_features, task_identification


def test_statnn_matches_numpy_per_tensor():
  rng = np.random.default_rng(0)
  tensors = {"params/b": rng.normal(size=(4, 3)), "params/a": rng.normal(size=(4, 2, 5))}
  X, names = statnn_features(tensors)
  assert X.shape == (4, 14)
  assert names[:2] == ["params/a:mean", "params/a:std"] and names[7] == "params/b:mean"
  a = tensors["params/a"][2].ravel()
  want = [a.mean(), a.std(), a.min(), np.percentile(a, 25), np.median(a),
          np.percentile(a, 75), a.max()]
  np.testing.assert_allclose(X[2, :7], want, rtol=1e-6)


def test_statnn_in_row_blocks_equals_one_block(monkeypatch):
  from jatlas.weights import features
  rng = np.random.default_rng(1)
  tensors = {"params/a": rng.normal(size=(7, 3, 5)).astype(np.float32),
             "params/b": rng.normal(size=(7, 2)).astype(np.float32)}
  whole, _ = statnn_features(tensors)
  monkeypatch.setattr(features, "CHUNK_FLOATS", 16)  # blocks of 1 row of a, 8 of b
  np.testing.assert_array_equal(statnn_features(tensors)[0], whole)


def test_task_identification_separable_and_chance():
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(4), 25)
  X = rng.normal(size=(100, 6)) + 4.0 * np.eye(4, 6)[y]
  train, test = member_split(y, 0.2, seed=0)
  assert len(set(train) & set(test)) == 0 and len(test) == 20
  assert np.bincount(y[test]).tolist() == [5, 5, 5, 5]  # stratified
  res = task_identification(X, y, train, test)
  assert res["accuracy"] == 1.0 and res["chance"] == 0.25
  noise = task_identification(rng.normal(size=(100, 6)), y, train, test)
  assert noise["accuracy"] < 0.6
  assert np.sum(res["confusion"]) == 20
