"""The CCA family: mean CCA, SVCCA (Raghu et al. 2017), PWCCA (Morcos et al. 2018).

Canonical correlations rho_i of x [n, d1] and y [n, d2] are the singular values of
Q_x^T Q_y, with Q the orthonormal bases (QR) of the column-centred features. All
three are similarities in [0, 1]:
  mean_cca  mean_i rho_i (r2=True: mean_i rho_i^2, invariant to any invertible linear map)
  svcca     mean CCA after keeping each side's top singular directions (`dims`, or the
            fewest explaining `keep` of the variance)
  pwcca     sum_i a_i rho_i, a_i proportional to sum_j |<h_i, x_j>|: how much of x's own
            features canonical variate h_i accounts for
CCA needs n > d: with as many features as examples every correlation is 1 (Kornblith
et al.), so mean_cca refuses that and SVCCA is the way to compare wide layers.

Usage:
  mean_cca(x_ND, y_NE); svcca(x_ND, y_NE, dims=20); pwcca(x_ND, y_NE)
"""
import jax.numpy as jnp
import numpy as np

from jatlas.similarity.features import centred_unit


def _check(x_ND, y_NE, what: str):
  n, d1, d2 = x_ND.shape[0], x_ND.shape[1], y_NE.shape[1]
  if max(d1, d2) >= n:
    raise ValueError(f"{what}: features ({d1}, {d2}) must be fewer than examples (n={n}); "
                     f"every canonical correlation is 1 otherwise (use svcca with dims < n)")


def canonical_correlations(x_ND, y_NE):
  """rho [min(d1, d2)], descending, and the x-side canonical variates h [n, k]."""
  qx, _ = jnp.linalg.qr(centred_unit(x_ND))
  qy, _ = jnp.linalg.qr(centred_unit(y_NE))
  u, rho, _ = jnp.linalg.svd(qx.T @ qy, full_matrices=False)
  return jnp.clip(rho, 0.0, 1.0), qx @ u


def mean_cca(x_ND, y_NE, r2: bool = False):
  _check(x_ND, y_NE, "mean_cca")
  rho, _ = canonical_correlations(x_ND, y_NE)
  return jnp.mean(rho ** 2) if r2 else jnp.mean(rho)


def svd_dims(x_ND, keep: float) -> int:
  """The fewest singular directions of centred x explaining `keep` of its variance
  (NumPy: a concrete count, computed once outside any jit or vmap)."""
  s = np.linalg.svd(np.asarray(centred_unit(x_ND), np.float64), compute_uv=False) ** 2
  return int(np.searchsorted(np.cumsum(s) / s.sum(), keep) + 1)


def _top_directions(x_ND, dims: int):
  u, s, _ = jnp.linalg.svd(centred_unit(x_ND), full_matrices=False)
  return u[:, :dims] * s[:dims]


def svcca(x_ND, y_NE, dims: int | tuple[int, int] | None = None, keep: float = 0.99):
  """Mean CCA of the top `dims` singular directions of each side (an int, or one per
  side; default: the fewest explaining `keep` of each side's variance, which needs
  concrete inputs: pass dims under jit / vmap)."""
  if dims is None:
    dims = (svd_dims(x_ND, keep), svd_dims(y_NE, keep))
  dx, dy = (dims, dims) if isinstance(dims, int) else dims
  x, y = _top_directions(x_ND, dx), _top_directions(y_NE, dy)
  _check(x, y, "svcca")
  return jnp.mean(canonical_correlations(x, y)[0])


def pwcca(x_ND, y_NE):
  """Projection-weighted CCA (module docstring); weights from x's side."""
  _check(x_ND, y_NE, "pwcca")
  rho, h_NK = canonical_correlations(x_ND, y_NE)
  a_K = jnp.sum(jnp.abs(h_NK.T @ centred_unit(x_ND)), 1)
  return jnp.sum(a_K * rho) / jnp.sum(a_K)
