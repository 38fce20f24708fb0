"""Centered kernel alignment (Kornblith et al. 2019), biased and debiased.

For features x [n, d1], y [n, d2] of the same n examples (rows):
  HSIC_0(K, L) = tr(K H L H) / (n-1)^2                     biased, H = I - 11^T / n
  HSIC_1(K, L) = <U(K), U(L)>_F / (n (n-3))                unbiased (Song et al. 2012)
  CKA          = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
U is U-centering (Szekely & Rizzo 2014): zero the diagonal, subtract row and column
means taken over n-2, add back the grand term, zero the diagonal again. Linear CKA
runs in feature space (d x d products) when that is cheaper than the n x n Gram
matrices; both give the same number. Inputs are scaled to unit norm first (CKA is
scale invariant; float32 products of raw activations overflow). A zero denominator
(a constant feature map) gives NaN, never a silent 0 or 1.

Every function is jittable and vmappable (`jatlas.similarity.calibrate` vmaps them).

Usage:
  linear_cka(x_ND, y_NE)                       # biased, as in most papers
  linear_cka(x_ND, y_NE, debiased=True)        # ~0 for independent features
  rbf_cka(x_ND, y_NE, threshold=0.5)           # bandwidth 0.5 x the median distance
  cka(gram_linear(x_ND), gram_rbf(y_NE), debiased=True)
"""
import jax.numpy as jnp

from jatlas.similarity.features import centred_unit


def gram_linear(x_ND):
  """K = x x^T [n, n]."""
  x_ND = jnp.asarray(x_ND, jnp.float32)
  return x_ND @ x_ND.T


def gram_rbf(x_ND, threshold: float = 1.0):
  """K_ij = exp(-|x_i - x_j|^2 / (2 s^2)), s^2 = threshold^2 x the median squared
  distance over all n^2 pairs (zero diagonal included, as the reference notebook)."""
  x_ND = jnp.asarray(x_ND, jnp.float32)
  sq_N = jnp.sum(x_ND ** 2, 1)
  d2_NN = jnp.maximum(sq_N[:, None] + sq_N[None, :] - 2 * x_ND @ x_ND.T, 0.0)
  return jnp.exp(-d2_NN / (2 * threshold ** 2 * jnp.median(d2_NN)))


def center_gram(k_NN, unbiased: bool = False):
  """H K H (biased), or U-centering with a zero diagonal (unbiased)."""
  k_NN = jnp.asarray(k_NN, jnp.float32)
  n = k_NN.shape[0]
  if not unbiased:
    return k_NN - k_NN.mean(0, keepdims=True) - k_NN.mean(1, keepdims=True) + k_NN.mean()
  k_NN = k_NN * (1 - jnp.eye(n, dtype=k_NN.dtype))
  col_N = k_NN.sum(0) / (n - 2)
  col_N = col_N - col_N.sum() / (2 * (n - 1))
  k_NN = k_NN - col_N[:, None] - col_N[None, :]
  return k_NN * (1 - jnp.eye(n, dtype=k_NN.dtype))


def cka(k_NN, l_NN, debiased: bool = False):
  """CKA of two Gram matrices (the n(n-3) or (n-1)^2 factors cancel)."""
  kc, lc = center_gram(k_NN, debiased), center_gram(l_NN, debiased)
  kl, kk, ll = jnp.vdot(kc, lc), jnp.vdot(kc, kc), jnp.vdot(lc, lc)
  return _ratio(kl, kk, ll)


def _ratio(xy, xx, yy):
  den = jnp.sqrt(xx * yy)
  # an unbiased self-HSIC can come out <= 0 (constant features, tiny n): NaN, said plainly
  return jnp.where((xx > 0) & (yy > 0), xy / jnp.where(den > 0, den, 1.0), jnp.nan)


def linear_cka(x_ND, y_NE, debiased: bool = False):
  """Linear CKA of features x [n, d1] and y [n, d2] (module docstring)."""
  x, y = centred_unit(x_ND), centred_unit(y_NE)
  n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
  if n < 4 and debiased:
    raise ValueError(f"debiased CKA needs at least 4 examples, got n={n}")
  if n < d1 + d2:  # Gram form costs n^2 (d1 + d2), feature form n (d1 + d2)^2
    return cka(gram_linear(x), gram_linear(y), debiased)
  return _feature_space_cka(x, y, debiased)


def _feature_space_cka(x, y, debiased: bool):
  """The same number from d x d products: <vec(xx^T), vec(yy^T)> = |y^T x|_F^2."""
  xy = jnp.sum((x.T @ y) ** 2)
  xx = jnp.sum((x.T @ x) ** 2)
  yy = jnp.sum((y.T @ y) ** 2)
  if not debiased:
    return _ratio(xy, xx, yy)
  n = x.shape[0]
  rx_N, ry_N = jnp.sum(x ** 2, 1), jnp.sum(y ** 2, 1)

  def unbiased(dot, ra, rb):  # HSIC_1 x n(n-3), from the products and row norms
    return dot - n / (n - 2) * jnp.dot(ra, rb) + ra.sum() * rb.sum() / ((n - 1) * (n - 2))
  return _ratio(unbiased(xy, rx_N, ry_N), unbiased(xx, rx_N, rx_N), unbiased(yy, ry_N, ry_N))


def rbf_cka(x_ND, y_NE, threshold: float = 1.0, debiased: bool = False):
  """CKA with RBF kernels, bandwidth `threshold` x the median distance of each side."""
  x_ND, y_NE = jnp.asarray(x_ND, jnp.float32), jnp.asarray(y_NE, jnp.float32)
  if x_ND.shape[0] < 4 and debiased:
    raise ValueError(f"debiased CKA needs at least 4 examples, got n={x_ND.shape[0]}")
  return cka(gram_rbf(x_ND, threshold), gram_rbf(y_NE, threshold), debiased)
