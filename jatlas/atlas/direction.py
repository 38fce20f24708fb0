"""Which of two related models is the parent: a rule fitted on known pairs.

MoTHer orients every edge by kurtosis (the parent has the higher kurtosis), but the
sign of that trend depends on how the children were made: on small fine-tuned zoos
kurtosis rises from parent to child. So jatlas fits the rule on pairs whose direction
is known (the documented part of an atlas, or time/step order) and falls back on a
self-consistency choice when none is known.

Features per model (`model_features`), per weight matrix in name order: Fisher
(excess) kurtosis of its entries, log of their RMS, and log(top singular value /
Frobenius norm) (how concentrated the spectrum is); first column: the sum of the
kurtoses, MoTHer's statistic.

  fit_direction   logistic regression (sklearn, no intercept) on standardised
                  differences child - parent (label 1) and parent - child (label 0),
                  so P(a -> b) = sigmoid(w . (f_b - f_a) / s) and P(b -> a) = 1 - P(a -> b).
  mother_rule     the fixed published rule: P(a -> b) = 1 when a's kurtosis sum is
                  higher, 0 when lower, 0.5 on ties.
  tree_consistent_rule  no known pairs: orient the edges of an undirected tree
                  (e.g. the minimum spanning tree of the distances) by every feature and
                  both signs; keep the orientation that gives the fewest nodes with
                  more than one parent (a fan read backwards gives its root many
                  parents; ties go to MoTHer's sign of the kurtosis sum), then fit on
                  the edges so oriented.

Usage:
  f_MF, names = model_features(tensors)
  rule = fit_direction(f_MF[parents_P], f_MF[children_P])
  rule.prob_parent(f_MF[a], f_MF[b])               # P(a is the parent of b)
  base = mother_rule(names)
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from jatlas.atlas.distances import matrix_names, num_models

KURTOSIS_SUM = "kurtosis_sum"


@jax.jit
def _matrix_stats(w_MHW):
  x = w_MHW.reshape(len(w_MHW), -1)
  c = x - x.mean(1, keepdims=True)
  var = jnp.mean(c ** 2, 1)
  kurt = jnp.mean(c ** 4, 1) / jnp.maximum(var ** 2, 1e-30) - 3.0
  rms = jnp.sqrt(jnp.mean(x ** 2, 1))
  top = jnp.linalg.svd(w_MHW, compute_uv=False)[:, 0]
  conc = top / jnp.maximum(jnp.linalg.norm(x, axis=1), 1e-30)
  return jnp.stack([kurt, jnp.log(jnp.maximum(rms, 1e-30)), jnp.log(jnp.maximum(conc, 1e-30))], 1)


def model_features(tensors, *, chunk: int = 1024) -> tuple[np.ndarray, list[str]]:
  """(f [M, 1 + 3 L], names) over the L weight matrices (module docstring)."""
  names = matrix_names(tensors)
  if not names:
    raise ValueError("model_features: no weight matrices (tensors with >= 2 axes per model)")
  m, cols, col_names = num_models(tensors), [], []
  for name in names:
    w = tensors[name].reshape(m, -1, tensors[name].shape[-1])
    pad = -(-m // chunk) * chunk if m > chunk else m
    w = np.pad(w, ((0, pad - m), (0, 0), (0, 0)))
    cols.append(np.concatenate([np.asarray(_matrix_stats(jnp.asarray(w[s:s + chunk])))
                                for s in range(0, pad, chunk)])[:m])
    col_names += [f"{name}:{s}" for s in ("kurtosis", "log_rms", "log_concentration")]
  f = np.concatenate(cols, 1).astype(np.float64)
  kurt = f[:, 0::3].sum(1, keepdims=True)
  return np.concatenate([kurt, f], 1), [KURTOSIS_SUM, *col_names]


@dataclasses.dataclass(frozen=True)
class DirectionRule:
  """P(a -> b) = sigmoid(w . (f_b - f_a) / scale), or its sign when `hard`."""
  w_F: np.ndarray
  scale_F: np.ndarray
  hard: bool = False
  source: str = "fitted"

  def logit(self, feat_a, feat_b) -> np.ndarray:
    diff = (np.asarray(feat_b, np.float64) - np.asarray(feat_a, np.float64)) / self.scale_F
    return diff @ self.w_F

  def prob_parent(self, feat_a, feat_b) -> np.ndarray:
    """P(a is the parent of b); feat_a, feat_b [..., F] broadcast."""
    z = self.logit(feat_a, feat_b)
    if self.hard:
      return 0.5 * (1 + np.sign(z))
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))

  def pairwise(self, f_NF) -> np.ndarray:
    """[N, N]: entry (i, j) = P(i is the parent of j)."""
    z_N = (np.asarray(f_NF, np.float64) / self.scale_F) @ self.w_F  # the logit is linear
    z = z_N[None, :] - z_N[:, None]
    if self.hard:
      return 0.5 * (1 + np.sign(z))
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def _check_pairs(fp, fc) -> tuple[np.ndarray, np.ndarray]:
  fp, fc = np.asarray(fp, np.float64), np.asarray(fc, np.float64)
  if fp.ndim != 2 or fp.shape != fc.shape or not len(fp):
    raise ValueError(f"fit_direction: features_parent_PF {fp.shape} and features_child_PF "
                     f"{fc.shape} must be one non-empty [P, F] shape")
  return fp, fc


def fit_direction(features_parent_PF, features_child_PF, *, C: float = 1.0) -> DirectionRule:
  """Logistic rule on known parent -> child pairs (module docstring)."""
  fp, fc = _check_pairs(features_parent_PF, features_child_PF)
  diff = fc - fp
  scale = np.sqrt(np.mean(diff ** 2, 0))
  scale = np.where(scale > 0, scale, 1.0)
  x = np.concatenate([diff, -diff]) / scale
  y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
  clf = LogisticRegression(C=C, fit_intercept=False, max_iter=1000).fit(x, y)
  return DirectionRule(clf.coef_[0].astype(np.float64), scale)


def mother_rule(feature_names) -> DirectionRule:
  """MoTHer's fixed rule: the parent has the higher kurtosis sum."""
  names = list(feature_names)
  if KURTOSIS_SUM not in names:
    raise ValueError(f"mother_rule: no {KURTOSIS_SUM!r} among the feature names {names[:5]}...")
  w = np.zeros(len(names))
  w[names.index(KURTOSIS_SUM)] = -1.0
  return DirectionRule(w, np.ones(len(names)), hard=True, source="mother")


def _extra_parents(edges_E2, oriented_E) -> int:
  """Nodes with more than one parent when edge e points edges[e, 0] -> edges[e, 1]
  where oriented_E, else backwards."""
  child = np.where(oriented_E, edges_E2[:, 1], edges_E2[:, 0])
  _, counts = np.unique(child, return_counts=True)
  return int(np.sum(counts - 1))


def tree_consistent_rule(f_MF, edges_E2, feature_names) -> DirectionRule:
  """A rule with no known pairs, from an undirected tree's edges (module docstring)."""
  edges = np.asarray(edges_E2, np.int64).reshape(-1, 2)
  names = list(feature_names)
  if not len(edges):
    return mother_rule(names)
  diff = f_MF[edges[:, 1]] - f_MF[edges[:, 0]]
  order = [names.index(KURTOSIS_SUM)] + [i for i in range(len(names)) if names[i] != KURTOSIS_SUM]
  best = None
  for col in order:
    for sign in (-1.0, 1.0):  # -1 first: MoTHer's sign wins ties
      oriented = sign * diff[:, col] > 0
      extra = _extra_parents(edges, oriented)
      if best is None or extra < best[0]:
        best = (extra, oriented)
  oriented = best[1]
  parents = np.where(oriented, edges[:, 0], edges[:, 1])
  children = np.where(oriented, edges[:, 1], edges[:, 0])
  rule = fit_direction(f_MF[parents], f_MF[children])
  return dataclasses.replace(rule, source="tree_consistent")
