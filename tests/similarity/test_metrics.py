"""Similarity metrics against plain NumPy / SciPy / scikit-learn formulas, their
invariances, the finite-sample bias of CKA, calibration and minibatch CKA.

The NumPy references are written from the papers' formulas (HSIC with the centring
matrix H; Song et al.'s eq. 5 for the unbiased HSIC, not the U-centring jatlas
uses), in float64.
"""
from functools import partial

import numpy as np
import pytest
import scipy.linalg
from sklearn.neighbors import NearestNeighbors

from jatlas import similarity as sim


def np_hsic_biased(k, l):
  n = len(k)
  h = np.eye(n) - 1.0 / n
  return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def np_hsic_unbiased(k, l):  # Song et al. 2012, eq. 5
  n = len(k)
  k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
  one = np.ones(n)
  return (np.trace(k @ l) + one @ k @ one * (one @ l @ one) / ((n - 1) * (n - 2))
          - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def np_cka(k, l, debiased=False):
  f = np_hsic_unbiased if debiased else np_hsic_biased
  return f(k, l) / np.sqrt(f(k, k) * f(l, l))


def np_rbf(x, threshold):
  d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
  return np.exp(-d2 / (2 * threshold ** 2 * np.median(d2)))


def related(n=60, d1=12, d2=9, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d1))
  y = np.tanh(x[:, :d2] @ rng.normal(size=(d2, d2))) + 0.5 * rng.normal(size=(n, d2))
  return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("shape", [(60, 12, 9), (20, 40, 30)], ids=["feature-space", "gram"])
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_and_rbf_cka_equal_numpy(shape, debiased):
  x, y = related(*shape)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  want = np_cka(x64 @ x64.T, y64 @ y64.T, debiased)
  assert float(sim.linear_cka(x, y, debiased=debiased)) == pytest.approx(want, abs=2e-5)
  want = np_cka(np_rbf(x64, 0.7), np_rbf(y64, 0.7), debiased)
  assert float(sim.rbf_cka(x, y, 0.7, debiased=debiased)) == pytest.approx(want, abs=2e-5)


def test_cka_invariances():
  x, y = related()
  q = np.linalg.qr(np.random.default_rng(1).normal(size=(12, 12)))[0].astype(np.float32)
  a = np.random.default_rng(2).normal(size=(12, 12)).astype(np.float32)  # invertible, not orthogonal
  for debiased in (False, True):
    f = partial(sim.linear_cka, debiased=debiased)
    assert float(f(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(f(x @ q, y)) == pytest.approx(float(f(x, y)), abs=1e-5)
    assert float(f(7.5 * x, y)) == pytest.approx(float(f(x, y)), abs=1e-5)
    assert abs(float(f(x @ a, y)) - float(f(x, y))) > 1e-2
  assert float(sim.rbf_cka(x, x, debiased=True)) == pytest.approx(1.0, abs=1e-5)
  # R^2 CCA is invariant to any invertible linear map
  assert float(sim.mean_cca(x @ a, y, r2=True)) == pytest.approx(
      float(sim.mean_cca(x, y, r2=True)), abs=1e-4)


@pytest.mark.parametrize("n,d,want", [(128, 768, 0.855), (256, 512, 0.667), (1000, 768, 0.435)])
def test_biased_cka_of_independent_features_is_large_debiased_is_not(n, d, want):
  # research notes 2.4: re-computed values for independent N(0, 1) features
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
  assert float(sim.linear_cka(x, y)) == pytest.approx(want, abs=0.02)
  assert abs(float(sim.linear_cka(x, y, debiased=True))) < 0.01


def test_cca_family_equals_numpy_and_scipy():
  x, y = related()
  xc, yc = x - x.mean(0), y - y.mean(0)
  qx, qy = np.linalg.qr(xc.astype(np.float64))[0], np.linalg.qr(yc.astype(np.float64))[0]
  u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
  assert float(sim.mean_cca(x, y)) == pytest.approx(rho.mean(), abs=1e-4)
  h = qx @ u
  a = np.abs(h.T @ xc).sum(1)
  assert float(sim.pwcca(x, y)) == pytest.approx((a * rho).sum() / a.sum(), abs=1e-4)
  ux, sx, _ = np.linalg.svd(xc.astype(np.float64), full_matrices=False)
  uy, sy, _ = np.linalg.svd(yc.astype(np.float64), full_matrices=False)
  tx, ty = ux[:, :5] * sx[:5], uy[:, :4] * sy[:4]
  rho5 = np.linalg.svd(np.linalg.qr(tx)[0].T @ np.linalg.qr(ty)[0], compute_uv=False)
  assert float(sim.svcca(x, y, dims=(5, 4))) == pytest.approx(rho5.mean(), abs=1e-4)
  keep = sim.svd_dims(x, 0.9)
  var = np.cumsum(sx ** 2) / np.sum(sx ** 2)
  assert var[keep - 1] >= 0.9 > (var[keep - 2] if keep > 1 else 0)
  # Procrustes: scipy's optimal rotation gives the same residual
  xn, yn = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
  yp = np.pad(yn, ((0, 0), (0, 3)))
  r, _ = scipy.linalg.orthogonal_procrustes(yp, xn)
  assert float(sim.procrustes_distance(x, y)) == pytest.approx(
      np.sum((xn - yp @ r) ** 2), abs=1e-4)
  assert float(sim.procrustes_distance(x, 3 * x + 1)) == pytest.approx(0.0, abs=1e-5)
  with pytest.raises(ValueError, match="fewer than examples"):
    sim.mean_cca(x[:10], y[:10])


def test_mutual_knn_equals_sklearn_neighbours():
  x, y = related(n=40)
  k = 5
  nx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
  ny = NearestNeighbors(n_neighbors=k + 1).fit(y).kneighbors(y, return_distance=False)[:, 1:]
  want = np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny)])
  assert float(sim.mutual_knn(x, y, k=k)) == pytest.approx(want, abs=1e-6)
  assert float(sim.mutual_knn(x, 2 * x, k=k)) == 1.0
  with pytest.raises(ValueError, match="k=40"):
    sim.mutual_knn(x, y, k=40)


def test_permutation_null_and_bootstrap_separate_related_from_independent():
  import jax
  x, y = related(n=80)
  noise = np.random.default_rng(5).normal(size=y.shape).astype(np.float32)
  f = partial(sim.linear_cka, debiased=True)
  real = sim.calibrated(f, x, y, jax.random.key(0), draws=100)
  null = sim.calibrated(f, x, noise, jax.random.key(0), draws=100)
  assert real["p_value"] < 0.02 and real["z"] > 5
  assert null["p_value"] > 0.05 and abs(null["null_mean"]) < 0.02
  assert real["ci_low"] <= real["score"] <= real["ci_high"] and real["boot_shift"] > 0
  assert null["ci_low"] < real["ci_low"]
  # a distance: closer than chance means a small p-value on the low side
  d = sim.permutation_null(sim.procrustes_distance, x, y, jax.random.key(1), draws=50,
                           higher_is_similar=False)
  assert d["p_value"] < 0.05 and d["score"] < d["null_mean"]
  again = sim.calibrated(f, x, y, jax.random.key(0), draws=100)
  assert again == real  # deterministic in its key
  with pytest.raises(ValueError, match="same n examples"):
    sim.bootstrap_ci(f, x, y[:-1], jax.random.key(0))


def test_minibatch_cka_equals_the_per_batch_numpy_estimator_and_cross_equals_joint():
  rng = np.random.default_rng(3)
  layers = [rng.normal(size=(50, d)).astype(np.float32) for d in (6, 9)]
  layers.append(np.tanh(layers[0] @ rng.normal(size=(6, 4))).astype(np.float32))
  sizes = [20, 20, 10]  # a ragged last batch
  acc = None
  starts = np.cumsum([0] + sizes)
  for s, e in zip(starts[:-1], starts[1:]):
    acc = sim.accumulate(acc, [l[s:e] for l in layers])
  got = np.asarray(sim.minibatch_cka(acc))
  grams = lambda l, s, e: l[s:e].astype(np.float64) @ l[s:e].astype(np.float64).T
  for a in range(3):
    for b in range(3):
      hsic = lambda p, q: sum(np_hsic_unbiased(grams(p, s, e), grams(q, s, e))
                              for s, e in zip(starts[:-1], starts[1:]))
      want = hsic(layers[a], layers[b]) / np.sqrt(hsic(layers[a], layers[a]) *
                                                   hsic(layers[b], layers[b]))
      assert got[a, b] == pytest.approx(want, abs=1e-4)
  assert np.allclose(np.diag(got), 1.0, atol=1e-5)
  # one batch: the debiased CKA; across models: the joint matrix's block
  one = sim.minibatch_cka(sim.accumulate(None, layers[:1], layers[2:]))
  assert float(one[0, 0]) == pytest.approx(float(sim.linear_cka(layers[0], layers[2],
                                                                debiased=True)), abs=1e-5)
  cross = sim.minibatch_cka(sim.accumulate(None, layers[:2], layers[2:]))
  joint = sim.minibatch_cka(sim.accumulate(None, layers))
  np.testing.assert_allclose(cross, np.asarray(joint)[:2, 2:], atol=1e-5)
