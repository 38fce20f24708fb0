"""A function of a batch run over all of x in batches of one fixed size.

The last batch is padded with copies of its first example (and the padding cut off
the outputs), so every call has one input shape: one compile however many examples.

Usage:
  logits_N = map_padded(lambda xb: net.apply(v, xb), x_N, 512)
  taps = map_padded(lambda xb: net.apply(v, xb, return_taps=True)[1], x_N, 512)  # pytrees too
"""
from typing import Callable

import jax
import numpy as np


def map_padded(fn: Callable, x, batch_size: int):
  """fn over batches of `batch_size` examples of x -> its outputs (a pytree) over all of x."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}: expected >= 1")
  x = np.asarray(x, np.float32)
  parts = []
  for lo in range(0, len(x), batch_size):
    xb = x[lo:lo + batch_size]
    pad = np.repeat(xb[:1], batch_size - len(xb), 0)
    out = jax.device_get(fn(np.concatenate([xb, pad])))
    parts.append(jax.tree.map(lambda a, n=len(xb): np.asarray(a)[:n], out))
  return jax.tree.map(lambda *a: np.concatenate(a), *parts)
