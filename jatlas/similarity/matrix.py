"""Similarity matrices from the nets' taps: layers x layers (two models or one), and
one layer across every pair of a population, each in one jitted pass.

Conv feature maps become features by an explicit `reduce` (`features.as_features`).

Usage:
  fa = tap_features(net_a, vars_a, x_N, reduce="mean")        # {tap: [n, d]}
  fb = tap_features(net_b, vars_b, x_N, reduce="mean")
  m_AB, rows, cols = layer_matrix(fa, fb)                      # linear CKA by default
  m_AA, rows, _ = layer_matrix(fa, metric=partial(linear_cka, debiased=True))
  m_MM = population_matrix(net, zoo.stacked_variables(rows), x_N, tap="conv2",
                           reduce="flatten")                   # [members, members]
"""
import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from jatlas.similarity.cka import linear_cka
from jatlas.similarity.features import as_features

def tap_features(net, variables, x, reduce: str | None = None, taps=None) -> dict:
  """{tap: [n, d]} of one model on inputs x (every tap, or the names in `taps`)."""
  _, all_taps = net.apply(variables, x, return_taps=True)
  names = list(all_taps) if taps is None else list(taps)
  missing = [t for t in names if t not in all_taps]
  if missing:
    raise KeyError(f"taps {missing} not in {type(net).__name__}'s taps {list(all_taps)}")
  return {t: as_features(all_taps[t], reduce, t) for t in names}


def layer_matrix(feats_a: Mapping, feats_b: Mapping | None = None,
                 metric: Callable = linear_cka):
  """(matrix [L_a, L_b], row names, column names); feats_b default: feats_a."""
  feats_b = feats_a if feats_b is None else feats_b
  rows, cols = list(feats_a), list(feats_b)
  fn = _matrix_fn(tuple(rows), tuple(cols), metric)
  return fn(dict(feats_a), dict(feats_b)), rows, cols


@functools.lru_cache(maxsize=64)
def _matrix_fn(rows: tuple, cols: tuple, metric: Callable):
  """One compiled program per (taps, metric): a repeated call does not compile again."""
  return jax.jit(lambda a, b: jnp.stack([jnp.stack([metric(a[r], b[c]) for c in cols])
                                         for r in rows]))


def population_matrix(net, stacked_variables, x, tap: str, reduce: str | None = None,
                      metric: Callable = linear_cka, batch: int = 64):
  """[M, M]: `metric` between tap `tap` of every pair of the M stacked models."""
  def feats(v):
    return as_features(net.apply(v, x, return_taps=True)[1][tap], reduce, tap)
  f_MND = jax.jit(lambda vs: jax.lax.map(feats, vs, batch_size=batch))(stacked_variables)
  m = f_MND.shape[0]
  i, j = jnp.triu_indices(m)
  pair = lambda ij: metric(f_MND[ij[0]], f_MND[ij[1]])
  upper = jax.jit(lambda ij: jax.lax.map(pair, ij, batch_size=batch))(jnp.stack([i, j], 1))
  out = jnp.zeros((m, m), jnp.float32).at[i, j].set(upper)
  return out.at[j, i].set(upper)
