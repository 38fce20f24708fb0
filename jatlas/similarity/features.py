"""Activations as the [n, d] features every metric takes, and their normalisation.

Conv feature maps [n, H, W, C] become features by an explicit choice, `reduce`:
"flatten" (every position a feature, as minibatch-CKA papers do) or "mean"
(spatial mean pool, as token-averaging papers do); dense taps [n, d] pass as they
are. There is no default for maps: the two give different answers.

Usage:
  as_features(h_NHWC, reduce="mean")    # [n, C]
  centred_unit(x_ND)                    # columns centred, unit Frobenius norm
"""
import jax.numpy as jnp

REDUCERS = ("flatten", "mean")


def as_features(h, reduce: str | None = None, name: str = "features"):
  """[n, ...] activations -> [n, d] (module docstring)."""
  h = jnp.asarray(h, jnp.float32)
  if h.ndim == 2:
    return h
  if h.ndim < 2:
    raise ValueError(f"{name}: shape {tuple(h.shape)}, expected [n, d] or [n, ..., C]")
  if reduce not in REDUCERS:
    raise ValueError(f"{name}: shape {tuple(h.shape)} is a feature map; pass "
                     f"reduce='flatten' or 'mean' (got {reduce!r})")
  if reduce == "mean":
    return h.reshape(h.shape[0], -1, h.shape[-1]).mean(1)
  return h.reshape(h.shape[0], -1)


def centred_unit(x_ND):
  """Columns centred, then scaled to unit Frobenius norm: every metric here is scale
  invariant, and float32 products of raw activations can overflow."""
  x_ND = jnp.asarray(x_ND, jnp.float32)
  x_ND = x_ND - x_ND.mean(0, keepdims=True)
  return x_ND / jnp.maximum(jnp.linalg.norm(x_ND), 1e-30)
