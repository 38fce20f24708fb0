"""Merging fine-tunes of one base through their task vectors tau_t = theta_t - theta_base.

  task_arithmetic  base + lam * sum_t tau_t                  (Ilharco et al. 2023)
  ties             base + lam * tau_m: each tau_t trimmed to its top-`density`
                   fraction by magnitude per tensor; per entry the sign of
                   sum_t trimmed tau_t is elected (0 -> +); tau_m averages the
                   trimmed entries that agree with it (Yadav et al. 2023)
  dare             each tau_t's entries dropped with probability p, survivors
                   scaled by 1/(1-p), then task arithmetic (Yu et al. 2024)
Everything works leaf by leaf on plain pytrees (params dicts, a zoo member, an
imported checkpoint); integer leaves (step counters) are taken from the base.

Usage:
  merged = task_arithmetic(base, [ft_a, ft_b], lam=0.5)
  merged = ties(base, [ft_a, ft_b], density=0.2, lam=1.0)
  merged = dare(base, [ft_a, ft_b], p=0.9, key=jax.random.key(0), lam=0.5)
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from jatlas.merge.soups import check_same_structure, is_float


def task_vector(base, model):
  """model - base per float leaf (zeros for the rest)."""
  check_same_structure(base, [model])
  return jax.tree.map(lambda b, m: m - b if is_float(b) else jnp.zeros_like(b), base, model)


def _apply(base, tau, lam: float):
  return jax.tree.map(lambda b, t: (b + lam * t).astype(b.dtype) if is_float(b) else b,
                      base, tau)


def task_arithmetic(base, models: Sequence, lam: float = 1.0):
  check_same_structure(base, models)
  taus = [task_vector(base, m) for m in models]
  return _apply(base, jax.tree.map(lambda *t: sum(t), *taus), lam)


def _trim(t, density: float):
  """Entries of t outside its top-`density` fraction by magnitude set to 0."""
  k = max(1, int(round(density * t.size)))
  thresh = jnp.sort(jnp.abs(t).ravel())[-k]
  return jnp.where(jnp.abs(t) >= thresh, t, 0)


def _ties_leaf(*taus_density):
  *taus, density = taus_density
  trimmed = jnp.stack([_trim(t, density) for t in taus])
  sign = jnp.where(trimmed.sum(0) >= 0, 1.0, -1.0)
  agree = (jnp.sign(trimmed) == sign) & (trimmed != 0)
  count = agree.sum(0)
  return jnp.where(count > 0, jnp.where(agree, trimmed, 0).sum(0) / jnp.maximum(count, 1), 0)


def ties(base, models: Sequence, density: float = 0.2, lam: float = 1.0):
  if not 0 < density <= 1:
    raise ValueError(f"ties: density={density} must be in (0, 1]")
  check_same_structure(base, models)
  taus = [task_vector(base, m) for m in models]
  merged = jax.tree.map(lambda b, *t: _ties_leaf(*t, density) if is_float(b)
                        else jnp.zeros_like(b), base, *taus)
  return _apply(base, merged, lam)


def dare(base, models: Sequence, p: float, key, lam: float = 1.0):
  if not 0 <= p < 1:
    raise ValueError(f"dare: p={p} must be in [0, 1)")
  check_same_structure(base, models)
  leaves, treedef = jax.tree.flatten(base)
  keys = jax.random.split(key, len(models) * len(leaves)).reshape(len(models), len(leaves))

  def sparse(i, model):
    tau = jax.tree.leaves(task_vector(base, model))
    kept = [t if not is_float(t) else jnp.where(
        jax.random.bernoulli(keys[i, j], 1 - p, t.shape), t / (1 - p), 0)
        for j, t in enumerate(tau)]
    return jax.tree.unflatten(treedef, kept)
  taus = [sparse(i, m) for i, m in enumerate(models)]
  return _apply(base, jax.tree.map(lambda *t: sum(t), *taus), lam)
