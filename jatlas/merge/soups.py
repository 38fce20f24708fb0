"""Weight averages of models that share one structure: soups and spherical interpolation.

  average  sum_i w_i theta_i / sum_i w_i   (uniform soup by default; Wortsman et al. 2022)
  slerp    per tensor, spherical interpolation between a and b at t in [0, 1] (linear
           where the two are (anti)parallel)
Leaves that are not floating point (step counters) come from the first model.

Usage:
  soup = average([m0, m1, m2]); soup = average(models, weights=[0.5, 0.3, 0.2])
  mid = slerp(a, b, 0.5)
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_float(x) -> bool:
  return jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)


def check_same_structure(first, others: Sequence) -> None:
  """Every model has the first one's keys and shapes; all mismatches listed at once."""
  ref = {jax.tree_util.keystr(p): np.shape(v) for p, v in
         jax.tree_util.tree_flatten_with_path(first)[0]}
  problems = []
  for i, m in enumerate(others):
    got = {jax.tree_util.keystr(p): np.shape(v) for p, v in
           jax.tree_util.tree_flatten_with_path(m)[0]}
    problems += [f"model {i}: missing {k}" for k in ref if k not in got]
    problems += [f"model {i}: extra {k}" for k in got if k not in ref]
    problems += [f"model {i}: {k} has shape {got[k]}, expected {ref[k]}"
                 for k in ref if k in got and got[k] != ref[k]]
  if problems:
    raise ValueError("models do not share one structure:\n  " + "\n  ".join(problems[:20]))


def average(models: Sequence, weights: Sequence[float] | None = None):
  if not models:
    raise ValueError("average: no models")
  check_same_structure(models[0], models[1:])
  w = np.ones(len(models)) if weights is None else np.asarray(weights, np.float64)
  if w.shape != (len(models),) or w.sum() <= 0 or (w < 0).any():
    raise ValueError(f"average: weights {list(w)} must be {len(models)} non-negative "
                     f"numbers with a positive sum")
  w = w / w.sum()
  return jax.tree.map(lambda *xs: sum(float(wi) * x for wi, x in zip(w, xs)).astype(
      xs[0].dtype) if is_float(xs[0]) else xs[0], *models)


def _slerp_leaf(a, b, t: float):
  a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
  na, nb = jnp.linalg.norm(a32), jnp.linalg.norm(b32)
  cos = jnp.clip(jnp.vdot(a32, b32) / jnp.maximum(na * nb, 1e-30), -1.0, 1.0)
  omega = jnp.arccos(cos)
  so = jnp.sin(omega)
  lin = (1 - t) * a32 + t * b32
  sph = (jnp.sin((1 - t) * omega) * a32 + jnp.sin(t * omega) * b32) / jnp.where(so > 1e-6, so, 1)
  return jnp.where(so > 1e-6, sph, lin).astype(a.dtype)


def slerp(a, b, t: float):
  if not 0 <= t <= 1:
    raise ValueError(f"slerp: t={t} must be in [0, 1]")
  check_same_structure(a, [b])
  return jax.tree.map(lambda x, y: _slerp_leaf(x, y, t) if is_float(x) else x, a, b)
