"""Calibration for any similarity score: a permutation null and a bootstrap interval.

A raw CKA of 0.4 means little alone: biased CKA of independent features is large
when features outnumber examples, and depth and width move it too. Two references,
each one compiled program over all draws (`lax.map` in chunks of `batch`):
  permutation null  the score with y's rows shuffled (example correspondence broken):
                    its mean, std, a one-sided p-value (1 + #{null >= score}) / (1 + draws)
                    and z = (score - null mean) / null std
  bootstrap         the score on examples resampled with replacement (the same rows on
                    both sides): the percentiles of those scores, shifted so that their
                    mean is the score. Duplicated rows look like perfectly matching
                    neighbours to a kernel estimator and raise every resampled CKA
                    (`boot_shift` says by how much); the bootstrap gives the spread, the
                    null the significance.
`metric(x, y)` is any function of this package with one calling convention (pass
options with functools.partial; SVCCA needs `dims` fixed). Programs are cached per metric
object and shapes: reuse one partial rather than making a new one per call.

Usage:
  res = calibrated(linear_cka, x_ND, y_NE, jax.random.key(0))     # both, one dict
  res["score"], res["null_mean"], res["p_value"], res["ci_low"], res["ci_high"]
  permutation_null(partial(linear_cka, debiased=True), x_ND, y_NE, key, draws=500)
  bootstrap_ci(mutual_knn, x_ND, y_NE, key, level=0.9)
  # a distance (Procrustes): higher_is_similar=False flips the p-value's side
"""
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


# x and y are arguments, not closed-over constants: baked into the program they would
# make every call with new features a new program (compiled again, and slowly)
@functools.partial(jax.jit, static_argnames=("metric", "batch"))
def _null_draws(metric, x_ND, y_NE, keys, batch: int):
  return jax.lax.map(lambda k: metric(x_ND, y_NE[jax.random.permutation(k, len(y_NE))]),
                     keys, batch_size=batch)


@functools.partial(jax.jit, static_argnames=("metric", "batch"))
def _boot_draws(metric, x_ND, y_NE, keys, batch: int):
  def one(k):
    idx = jax.random.randint(k, (len(x_ND),), 0, len(x_ND))
    return metric(x_ND[idx], y_NE[idx])
  return jax.lax.map(one, keys, batch_size=batch)


@functools.partial(jax.jit, static_argnames=("metric",))
def _score(metric, x_ND, y_NE):
  return metric(x_ND, y_NE)


def permutation_null(metric: Callable, x_ND, y_NE, key, draws: int = 200, batch: int = 16,
                     higher_is_similar: bool = True) -> dict:
  """The score against `draws` row-shuffled copies of y (module docstring)."""
  x_ND, y_NE = _pair(x_ND, y_NE)
  score = float(_score(metric, x_ND, y_NE))
  null = np.asarray(_null_draws(metric, x_ND, y_NE, jax.random.split(key, draws), batch))
  beyond = null >= score if higher_is_similar else null <= score
  std = float(null.std())
  return {"score": score, "null_mean": float(null.mean()), "null_std": std,
          "p_value": float((1 + beyond.sum()) / (1 + draws)),
          "z": float((score - null.mean()) / std) if std > 0 else float("nan"),
          "draws": draws}


def bootstrap_ci(metric: Callable, x_ND, y_NE, key, draws: int = 200, level: float = 0.95,
                 batch: int = 16) -> dict:
  """Percentile interval of the score over `draws` resamples of the examples."""
  x_ND, y_NE = _pair(x_ND, y_NE)
  if not 0 < level < 1:
    raise ValueError(f"bootstrap_ci: level={level} must be in (0, 1)")
  boot = np.asarray(_boot_draws(metric, x_ND, y_NE, jax.random.split(key, draws), batch))
  score = float(_score(metric, x_ND, y_NE))
  shift = float(np.nanmean(boot)) - score  # what duplicated rows add (module docstring)
  low, high = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2]) - shift
  return {"score": score, "ci_low": float(low), "ci_high": float(high),
          "boot_std": float(np.nanstd(boot)), "boot_shift": shift, "level": level,
          "draws": draws}


def calibrated(metric: Callable, x_ND, y_NE, key, draws: int = 200, level: float = 0.95,
               higher_is_similar: bool = True) -> dict:
  """permutation_null and bootstrap_ci in one dict."""
  k_null, k_boot = jax.random.split(key)
  out = permutation_null(metric, x_ND, y_NE, k_null, draws,
                         higher_is_similar=higher_is_similar)
  out.update({k: v for k, v in bootstrap_ci(metric, x_ND, y_NE, k_boot, draws, level).items()
              if k not in ("score", "draws")})
  return out


def _pair(x_ND, y_NE):
  x_ND, y_NE = jnp.asarray(x_ND, jnp.float32), jnp.asarray(y_NE, jnp.float32)
  if x_ND.ndim != 2 or y_NE.ndim != 2 or len(x_ND) != len(y_NE):
    raise ValueError(f"features must be [n, d] with the same n examples; got x "
                     f"{tuple(x_ND.shape)} and y {tuple(y_NE.shape)} (conv maps: "
                     f"jatlas.similarity.as_features first)")
  return x_ND, y_NE
