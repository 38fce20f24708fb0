"""BatchNorm statistics recomputed after merging ("reset BN", REPAIR; git re-basin).

Averaged or permuted weights make every BatchNorm's running mean and variance stale:
they describe the parents' activations, not the merged net's. `recompute_batch_stats`
runs the net in train mode over all of x (as torch's `momentum=None` pass does: every
BatchNorm normalises with its batch's statistics) and sets each layer's running
statistics to the statistics of its input over every example: the mean and the
unbiased (torch) variance, per channel. Batches are pooled exactly (Chan et al.'s
parallel formula, weighted by size, between-batch spread included), not averaged one
per batch as torch does; so the first BatchNorm gets the exact statistics of its input
over x for any batch size, and deeper ones those of their train-mode inputs, which
depend on the batches only through the upstream layers' batch normalisation.
The inputs are read by intercepting each `nn.BatchNorm` call, so nothing depends on
the layers' momentum.

Usage:
  merged = merge.average([va, vb])
  merged = recompute_batch_stats(net, merged, x_train_N)     # params unchanged
  logits = net.apply(merged, x_test)                          # eval mode, fresh stats
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jatlas.flat_names import flatten_variables, unflatten_variables


def _record_input(next_fun, args, kwargs, context):
  """Sows each BatchNorm call's input count, mean and sum of squared deviations."""
  if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
    h = jnp.asarray(args[0], jnp.float32)
    axes = tuple(range(h.ndim - 1))
    mean = h.mean(axes)
    context.module.sow("bn_inputs", "count", jnp.float32(h.size // h.shape[-1]))
    context.module.sow("bn_inputs", "mean", mean)
    context.module.sow("bn_inputs", "m2", ((h - mean) ** 2).sum(axes))
  return next_fun(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def _batch_moments(net):
  """One jitted train-mode pass per net: {layer path: (count, mean, m2)} per call."""
  def moments(variables, x):
    with nn.intercept_methods(_record_input):
      _, state = net.apply(variables, x, train=True, mutable=["batch_stats", "bn_inputs"])
    return state["bn_inputs"]
  return jax.jit(moments)


def _pool(parts):
  """Chan's parallel update over (count, mean [C], m2 [C]) parts -> (n, mean, m2)."""
  n, mean, m2 = 0.0, 0.0, 0.0
  for nb, mb, m2b in parts:
    nb, mb, m2b = float(nb), np.asarray(mb, np.float64), np.asarray(m2b, np.float64)
    delta = mb - mean
    total = n + nb
    mean = mean + delta * nb / total
    m2 = m2 + m2b + delta ** 2 * n * nb / total
    n = total
  return n, mean, m2


def recompute_batch_stats(net, variables, x, *, batch_size: int = 256):
  """`variables` with each BatchNorm's `batch_stats` {mean, var} recomputed over all of x.

  Train-mode passes over batches of `batch_size` (the last one may be smaller: at most
  two compiles); mean and unbiased variance pooled exactly over the batches (module
  docstring). Params and other collections are returned unchanged; a net without
  `batch_stats` comes back unchanged, as it has no statistics to go stale.
  """
  if "batch_stats" not in variables:
    return variables
  x = np.asarray(x, np.float32)
  if len(x) < 1 or batch_size < 1:
    raise ValueError(f"recompute_batch_stats: x has {len(x)} examples and batch_size="
                     f"{batch_size}; expected at least 1 of each")
  fn = _batch_moments(net)
  parts = {}
  for lo in range(0, len(x), batch_size):
    got = flatten_variables(jax.device_get(fn(variables, x[lo:lo + batch_size])))
    for name, calls in got.items():
      layer, stat = name.rsplit("/", 1)
      parts.setdefault(layer, {}).setdefault(stat, []).extend(calls)
  return {**variables, "batch_stats": _stats(variables["batch_stats"], parts)}


def _stats(old, parts: dict):
  """The new batch_stats tree: every layer of `old` must have been seen in `parts`."""
  flat = flatten_variables(old)
  layers = sorted({name.rsplit("/", 1)[0] for name in flat})
  missing = [layer for layer in layers if layer not in parts]
  if missing:
    raise ValueError(f"recompute_batch_stats: batch_stats layers {missing} ran no "
                     f"nn.BatchNorm in train mode; expected every layer of batch_stats to")
  new = {}
  for layer in layers:
    p = parts[layer]
    n, mean, m2 = _pool(zip(p["count"], p["mean"], p["m2"]))
    if n < 2:
      raise ValueError(f"recompute_batch_stats: {layer} saw {n:.0f} value(s) per channel; "
                       "the unbiased variance needs at least 2")
    for stat, value in (("mean", mean), ("var", m2 / (n - 1))):
      ref = flat[f"{layer}/{stat}"]
      new[f"{layer}/{stat}"] = jnp.asarray(value, ref.dtype).reshape(ref.shape)
  return unflatten_variables(new)
