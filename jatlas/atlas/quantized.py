"""Detect int8-quantized models from their (dequantized) weights.

A weight slice quantized to int8 takes values offset + q * scale with q integer and at
most 256 levels. For each slice (the whole tensor, every slice along its first axis,
every slice along its last axis: per-tensor and per-channel schemes in either layout)
the test tries the scales the common schemes use (max|w| / 127 and / 127.5 symmetric,
(max - min) / 255 and / 254 affine from min, and the smallest gap between sorted values
when that gives <= 256 levels) and keeps the smallest mean distance of (w - offset) /
scale to the nearest integer. Float weights give ~0.25 (uniform fractions); quantized
ones ~0. A tensor's score is 1 - 4 x that residual (clipped to [0, 1]) for its best
slicing; a model's score is the median over its weight matrices (biases often stay
float). Floating-point casts (bf16/fp16) are not grids: their levels are far more than 256.

A quantized model is kept as a leaf of the atlas; its parent is its nearest
non-quantized model (`jatlas.atlas.recover`).

Usage:
  flag, score = is_quantized(flat_variables)               # one model
  flags_M, scores_M = detect_quantized(tensors)             # stacked {name: [M, ...]}
"""
import numpy as np

from jatlas.atlas.distances import matrix_names, num_models, stack_models

THRESHOLD = 0.9
LEVELS = 256


def _residual(s_SN: np.ndarray) -> np.ndarray:
  """[S] best mean distance to an int grid of each slice's values (module docstring)."""
  s = np.asarray(s_SN, np.float64)
  lo, hi = s.min(1, keepdims=True), s.max(1, keepdims=True)
  amax = np.abs(s).max(1, keepdims=True)
  srt = np.sort(s, 1)
  gaps = np.diff(srt, axis=1)
  tiny = 1e-6 * np.maximum(hi - lo, 1e-30)
  gap = np.where(gaps > tiny, gaps, np.inf).min(1, keepdims=True) if s.shape[1] > 1 else amax
  gap = np.where(np.isfinite(gap) & ((hi - lo) / np.where(np.isfinite(gap), gap, 1)
                                     <= LEVELS), gap, np.nan)
  best = np.full(len(s), 0.5)
  for offset, scale in ((0.0, amax / 127), (0.0, amax / 127.5), (lo, (hi - lo) / 255),
                        (lo, (hi - lo) / 254), (lo, gap)):
    ok = np.isfinite(scale) & (scale > 0)
    q = (s - offset) / np.where(ok, scale, 1.0)
    r = np.abs(q - np.round(q)).mean(1)
    best = np.minimum(best, np.where(ok[:, 0], r, 0.5))
  constant = (hi - lo)[:, 0] <= 0
  return np.where(constant, 0.0, best)


def tensor_scores(w_M, *, chunk: int = 256) -> np.ndarray:
  """[M] grid scores in [0, 1] of one stacked tensor [M, ...] (module docstring)."""
  w_M = np.asarray(w_M)
  out = []
  for s in range(0, len(w_M), chunk):
    w = np.asarray(w_M[s:s + chunk], np.float64)
    m = len(w)
    slicings = [w.reshape(m, 1, -1)]
    if w.ndim >= 3:
      slicings += [w.reshape(m, w.shape[1], -1), np.moveaxis(w, -1, 1).reshape(m, w.shape[-1], -1)]
    res = [_residual(x.reshape(-1, x.shape[2])).reshape(m, -1).mean(1) for x in slicings]
    out.append(np.clip(1 - 4 * np.min(res, 0), 0.0, 1.0))
  return np.concatenate(out)


def detect_quantized(tensors, *, threshold: float = THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
  """(flags_M bool, scores_M) for stacked tensors {name: [M, ...]}."""
  names = matrix_names(tensors)
  m = num_models(tensors)
  if not names:
    return np.zeros(m, bool), np.zeros(m)
  score_M = np.median(np.stack([tensor_scores(tensors[n]) for n in names], 1), 1)
  return score_M >= threshold, score_M


def is_quantized(model, *, threshold: float = THRESHOLD) -> tuple[bool, float]:
  """(flag, score) for one model: a (nested or flat) dict of its tensors."""
  flags, scores = detect_quantized(stack_models([model]), threshold=threshold)
  return bool(flags[0]), float(scores[0])
