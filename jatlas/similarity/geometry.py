"""Shape metrics beside CKA: orthogonal Procrustes distance and mutual k-NN alignment.

procrustes_distance  min over orthogonal Q of |x - y Q|_F^2 for column-centred,
                     unit-Frobenius x and y (zero-padded to one width):
                     2 - 2 |x^T y|_* (nuclear norm), in [0, 2]; 0 = same up to
                     rotation and scale (Ding et al. 2021). A distance: lower is closer.
mutual_knn           mean over examples of |N_k^x(i) & N_k^y(i)| / k, the k nearest
                     other examples of i in each space (Euclidean): a similarity in
                     [0, 1] (Huh et al. 2024's alignment measure).

Usage:
  procrustes_distance(x_ND, y_NE); mutual_knn(x_ND, y_NE, k=10)
"""
import jax
import jax.numpy as jnp

from jatlas.similarity.features import centred_unit


def procrustes_distance(x_ND, y_NE):
  x, y = centred_unit(x_ND), centred_unit(y_NE)
  nuclear = jnp.sum(jnp.linalg.svd(x.T @ y, compute_uv=False))
  return jnp.maximum(2.0 - 2.0 * nuclear, 0.0)


def _neighbours(x_ND, k: int):
  sq_N = jnp.sum(x_ND ** 2, 1)
  d2_NN = sq_N[:, None] + sq_N[None, :] - 2 * x_ND @ x_ND.T
  d2_NN = jnp.where(jnp.eye(len(x_ND), dtype=bool), jnp.inf, d2_NN)  # never itself
  return jax.lax.top_k(-d2_NN, k)[1]


def mutual_knn(x_ND, y_NE, k: int = 10):
  n = x_ND.shape[0]
  if not 0 < k < n:
    raise ValueError(f"mutual_knn: k={k} must be in [1, n-1] for n={n} examples")
  nx_NK = _neighbours(jnp.asarray(x_ND, jnp.float32), k)
  ny_NK = _neighbours(jnp.asarray(y_NE, jnp.float32), k)
  shared_N = jnp.sum(nx_NK[:, :, None] == ny_NK[:, None, :], (1, 2))
  return jnp.mean(shared_N / k)
