"""Symmetric label noise on the training labels of a TaskSet.

Usage:
  noisy = with_label_noise(one_vs_rest(ds), rates=(0.0, 0.2), seed=0)
  noisy.names[:2]   # ("one_vs_rest:0+noise0", "one_vs_rest:0+noise0.2")
"""
from typing import Sequence

import numpy as np

from jatlas.data.tasks import TaskSet


def with_label_noise(tasks: TaskSet, rates: Sequence[float], seed: int = 0) -> TaskSet:
  """Repeats each task once per rate, corrupting that share of its train labels.

  For task t and rate r, exactly round(r * M) of the M train examples belonging
  to t get a label drawn uniformly from t's other classes; val/test labels and
  membership are unchanged. A task's classes are 0..K-1 with K = its largest
  label over all splits + 1 (so a 2-class subset in a 3-wide set stays 2-class).
  Names get "+noise<r>"; the draw for (t, r) depends only on (seed, t, r).
  """
  rates = [float(r) for r in rates]
  if not rates:
    raise ValueError("with_label_noise needs at least one rate")
  for r in rates:
    if not 0.0 <= r <= 1.0:
      raise ValueError(f"noise rate must be in [0, 1], got {r}")
  if "train" not in tasks.labels:
    raise ValueError(f"TaskSet has no 'train' labels, only {sorted(tasks.labels)}")
  names, rows = [], {s: [] for s in tasks.labels}
  for t, name in enumerate(tasks.names):
    k = 1 + max(int(y[t].max()) for y in tasks.labels.values() if y.shape[1])
    for i, rate in enumerate(rates):
      rng = np.random.default_rng([seed, t, i])
      names.append(f"{name}+noise{rate:g}")
      for s, y_TN in tasks.labels.items():
        y = y_TN[t].copy()
        if s == "train":
          _flip(y, rate, k, rng, name)
        rows[s].append(y)
  labels = {s: np.stack(r).astype(np.int32) for s, r in rows.items()}
  return TaskSet(tuple(names), tasks.num_classes, labels)


def _flip(y_N: np.ndarray, rate: float, k: int, rng: np.random.Generator, name: str):
  """In place: relabels round(rate * M) member examples to a different class."""
  members = np.flatnonzero(y_N >= 0)
  n_flip = round(rate * len(members))
  if n_flip and k < 2:
    raise ValueError(f"task {name!r} has a single class; its labels cannot be flipped")
  chosen = rng.choice(members, size=n_flip, replace=False)
  # An offset in [1, k) modulo k is uniform over the k-1 other classes.
  y_N[chosen] = (y_N[chosen] + rng.integers(1, k, size=n_flip)) % k
