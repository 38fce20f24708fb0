"""Per-tensor weight statistics ("StatNN", Unterthiner et al. 2020).

For every tensor: mean, std and the 0/25/50/75/100 percentiles. On the Small
CNN Zoo these 7 x (#tensors) features beat raw weights for predicting accuracy.
"""
from typing import Mapping

import numpy as np

STATS = ("mean", "std", "q0", "q25", "q50", "q75", "q100")
CHUNK_FLOATS = 1 << 24  # float64 working copy per block of rows (128 MiB), not per tensor


def statnn_features(tensors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
  """tensors: name -> [R, ...] stacked over models -> (features [R, 7*K], names).
  Rows go in blocks, so the float64 copies stay small however many models there are
  (10^4 LeNet-5s: 3.8 GB per copy of conv3's kernel otherwise); each row's statistics
  are its own, so the blocks change nothing."""
  cols, names = [], []
  for name in sorted(tensors):
    w = tensors[name]
    r, p = len(w), int(np.prod(w.shape[1:], dtype=np.int64))
    step = max(1, CHUNK_FLOATS // max(1, p))
    blocks = [_stats(np.asarray(w[i:i + step], np.float64).reshape(-1, p))
              for i in range(0, r, step)]
    cols.append(np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(STATS))))
    names += [f"{name}:{s}" for s in STATS]
  return np.concatenate(cols, axis=1).astype(np.float32), names


def _stats(w_RP: np.ndarray) -> np.ndarray:
  q_5R = np.percentile(w_RP, [0, 25, 50, 75, 100], axis=1)
  return np.stack([w_RP.mean(1), w_RP.std(1), *q_5R], axis=1)
