"""Detect merged models: nodes that are a combination of >= 2 others.

Candidates for node i are its k nearest models (Euclidean over the layer-normalised
weights, `distances.normalised_layers`); k is large because an average of siblings
that share a drift is often nearer other siblings than its own parents. Two tests,
either one suffices:

  linear     for every subset S of 2..max_parents candidates, fit x_i,l ~ sum_j w_lj x_j,l
             per layer l by least squares (per layer: soups, per-tensor SLERP, layer-wise
             recipes), S among the TOP nearest candidates and the TOP others of
             largest median weight in the fit on all k (a merge's parents carry that
             fit); S qualifies when every w_lj >= -0.05 and each parent's mean
             weight >= min_weight. ratio = residual of the best qualifying S / residual
             of the best single candidate (also fitted with a free scale). An average is
             ~0, a SLERP of nearby models tiny; a fine-tune ~1 (its noise is explained by
             no one), and a fan's root, the mean of its children up to their noise,
             ~sqrt(1 - s/k) or more. Merge when ratio < `ratio`.
  selection  coordinate-wise: candidate j covers coordinate p when |x_i[p] - x_j[p]| is
             below `tol` x the median |x_i - x_nearest|; a TIES/DARE-like merge (lam = 1)
             copies each coordinate from a parent or the base. Merge when >= 60% of the
             coordinates are covered (TIES averages the coordinates where parents agree,
             so 10-15% are nobody's; fine-tunes have ~20% covered by chance among k
             candidates) and >= 2 candidates each cover >= 2% alone; its
             parents are those candidates (the base among them).

The Gram matrices are computed on device from tensors centred by the subset mean and
reassembled in float64 (x_j . x_k = c_j . c_k + c_j . mu + c_k . mu + mu . mu), so the
residuals of near-exact combinations are not float32 round-off.

Usage:
  layers = normalised_layers(tensors, idx)
  found = detect_merges(layers, exclude=quantized_rows)
  found[i]  # {"parents": (j, ...), "weights": (...), "confidence": c, "test": "linear"}
"""
import itertools
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

K = 48
TOP = 6
MAX_PARENTS = 3
RATIO = 0.2
MIN_WEIGHT = 0.05
TOL = 1e-3
EXPLAINED = 0.6
UNIQUE = 0.02


@jax.jit
def _centred_gram(x_NP):
  mu = x_NP.mean(0)
  c = x_NP - mu
  hi = jax.lax.Precision.HIGHEST
  return jnp.dot(c, c.T, precision=hi), jnp.dot(c, mu, precision=hi), jnp.dot(mu, mu)


def layer_grams(layers: Sequence[np.ndarray]) -> np.ndarray:
  """[L, N, N] float64 Gram matrices x_j . x_k per layer (module docstring)."""
  out = []
  for x in layers:
    g, h, mm = (np.asarray(a, np.float64) for a in _centred_gram(jnp.asarray(x, jnp.float32)))
    out.append(g + h[:, None] + h[None, :] + mm)
  return np.stack(out)


def _fit(gram_LNN, node_B, subset_BS) -> tuple[np.ndarray, np.ndarray]:
  """Per-layer least squares of x_node on x_subset: (residual^2 [B], weights [B, L, S])."""
  a = gram_LNN[:, subset_BS[:, :, None], subset_BS[:, None, :]].transpose(1, 0, 2, 3)
  rhs = gram_LNN[:, subset_BS, node_B[:, None]].transpose(1, 0, 2)
  ridge = 1e-12 * np.trace(a, axis1=2, axis2=3)[..., None, None] * np.eye(a.shape[-1])
  w = np.linalg.solve(a + ridge, rhs[..., None])[..., 0]
  self_sq = gram_LNN[:, node_B, node_B].T
  res = np.maximum(self_sq - np.sum(rhs * w, -1), 0.0).sum(1)
  return res, w


def _linear_test(gram, nbr_NK, nodes, max_parents, min_weight, ratio, sizes_L):
  """(ratio [N], parents [N, max_parents] (-1 pad), mean weights [N, max_parents])."""
  n, k = nbr_NK.shape
  singles = _fit(gram, np.repeat(nodes, k), nbr_NK.reshape(-1, 1))[0].reshape(n, k).min(1)
  eps = 1e-12 * np.maximum(gram[:, nodes, nodes].sum(0), 1e-30)
  # no subset fits better than all k candidates together: screen on that one fit
  res_all, w_all = _fit(gram, nodes, nbr_NK)
  screen = np.flatnonzero(np.sqrt(res_all + eps) < ratio * np.sqrt(singles + eps))
  # the combinations are searched among the `top` nearest and the `top` heaviest
  # others in the fit on all k candidates, where a merge's parents carry the weight
  # (median over the layers with more entries than candidates: others fit anyhow)
  top = min(TOP, k)
  fitted = sizes_L > 2 * k
  w_all = w_all[:, fitted] if fitted.any() else w_all
  order = np.argsort(-np.median(w_all, 1), 1, kind="stable")
  cols = np.array([np.concatenate([np.arange(top), o[o >= top][:top]]) for o in order])
  nbr_NK = np.take_along_axis(nbr_NK, cols, 1)
  k = nbr_NK.shape[1]
  best_res = np.full(n, np.inf)
  best_sub = np.full((n, max_parents), -1)
  best_w = np.zeros((n, max_parents))
  for size in range(2, min(max_parents, k) + 1) if len(screen) else ():
    for combo in itertools.combinations(range(k), size):
      sub = nbr_NK[screen][:, list(combo)]
      res, w = _fit(gram, nodes[screen], sub)
      ok = (w >= -0.05).all((1, 2)) & (w.mean(1) >= min_weight).all(1) & (res < best_res[screen])
      rows = screen[ok]
      best_res[rows] = res[ok]
      best_sub[rows] = np.pad(sub[ok], ((0, 0), (0, max_parents - size)), constant_values=-1)
      best_w[rows] = np.pad(w[ok].mean(1), ((0, 0), (0, max_parents - size)))
  return np.sqrt(best_res + eps) / np.sqrt(singles + eps), best_sub, best_w


@jax.jit
def _cover(xi_BP, xn_BKP, tol):
  diff = jnp.abs(xn_BKP - xi_BP[:, None, :])
  scale = jnp.median(diff[:, 0, :], axis=1)
  close = diff <= tol * scale[:, None, None]
  n_close = close.sum(1)
  explained = (n_close > 0).mean(1)
  unique = (close & (n_close == 1)[:, None, :]).mean(2)
  return explained, unique


def _selection_test(flat_NP, nodes, nbr_NK, tol, chunk=64):
  explained, unique = [], []
  for s in range(0, len(nodes), chunk):
    nd, nb = nodes[s:s + chunk], nbr_NK[s:s + chunk]
    e, u = _cover(jnp.asarray(flat_NP[nd]), jnp.asarray(flat_NP[nb]), tol)
    explained.append(np.asarray(e))
    unique.append(np.asarray(u))
  return np.concatenate(explained), np.concatenate(unique)


def detect_merges(layers: Sequence[np.ndarray], *, k: int = K, max_parents: int = MAX_PARENTS,
                  ratio: float = RATIO, min_weight: float = MIN_WEIGHT, tol: float = TOL,
                  exclude: Iterable[int] = (), candidates_excluded: bool = True) -> dict:
  """{node: {"parents", "weights", "confidence", "test"}} among the N models of
  `layers` ([N, P_l] each); `exclude`: rows never tested (and, with
  candidates_excluded, never parents either)."""
  n = len(layers[0])
  excl = np.zeros(n, bool)
  excl[list(exclude)] = True
  nodes = np.flatnonzero(~excl)
  pool = nodes if candidates_excluded else np.arange(n)
  k = min(k, len(pool) - 1)
  if k < 2:
    return {}
  gram = layer_grams(layers)
  sq = np.diagonal(gram, axis1=1, axis2=2).sum(0)
  d2 = sq[nodes, None] + sq[None, pool] - 2 * gram[:, nodes][:, :, pool].sum(0)
  d2[pool[None, :] == nodes[:, None]] = np.inf
  nbr = pool[np.argsort(d2, 1, kind="stable")[:, :k]]
  lin_ratio, lin_sub, lin_w = _linear_test(gram, nbr, nodes, max_parents, min_weight, ratio,
                                            np.array([x.shape[1] for x in layers]))
  flat = np.concatenate([np.asarray(x, np.float32) for x in layers], 1)
  explained, unique = _selection_test(flat, nodes, nbr, tol)
  found = {}
  for r, i in enumerate(nodes):
    sel = nbr[r][unique[r] >= UNIQUE]
    if lin_ratio[r] < ratio:
      keep = lin_sub[r] >= 0
      found[int(i)] = {"parents": tuple(int(j) for j in lin_sub[r][keep]),
                       "weights": tuple(float(w) for w in lin_w[r][keep]),
                       "confidence": float(np.clip(1 - lin_ratio[r], 0, 1)), "test": "linear"}
    elif explained[r] >= EXPLAINED and len(sel) >= 2:
      share = unique[r][unique[r] >= UNIQUE]
      found[int(i)] = {"parents": tuple(int(j) for j in sel),
                       "weights": tuple(float(w) for w in share / share.sum()),
                       "confidence": float(explained[r]), "test": "selection"}
  return found
