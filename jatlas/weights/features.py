"""Per-tensor weight statistics ("StatNN", Unterthiner et al. 2020).

For every tensor: mean, std and the 0/25/50/75/100 percentiles. On the Small
CNN Zoo these 7 x (#tensors) features beat raw weights for predicting accuracy.
"""
from typing import Mapping

import numpy as np

STATS = ("mean", "std", "q0", "q25", "q50", "q75", "q100")


def statnn_features(tensors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
  """tensors: name -> [R, ...] stacked over models -> (features [R, 7*K], names)."""
  cols, names = [], []
  for name in sorted(tensors):
    w_RP = np.asarray(tensors[name], np.float64).reshape(len(tensors[name]), -1)
    q_5R = np.percentile(w_RP, [0, 25, 50, 75, 100], axis=1)
    cols += [w_RP.mean(1), w_RP.std(1), *q_5R]
    names += [f"{name}:{s}" for s in STATS]
  return np.stack(cols, axis=1).astype(np.float32), names
