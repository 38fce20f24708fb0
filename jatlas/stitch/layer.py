"""Stitch layers: map a sender's tap onto the shape a receiver's tap expects.

The adapter follows the two shapes (Hernandez et al. 2023):
  map -> map, same size      k x k conv (k=1: the affine 1x1 stitch), 'same' padding
  map -> smaller map         conv with kernel = stride = the size ratio
  map -> larger map          nearest upsampling by the ratio, then a 1x1 conv
  map or vector -> vector    flatten, then a Dense layer
`norm=True` adds a LayerNorm over channels before and after the map (Bansal et al.
wrap the stitch in BatchNorms; LayerNorm keeps the stitch free of batch statistics,
so a population of stitches has no state). Spatial ratios must be whole numbers.
Kernels start LeCun-normal (`lecun_normal_flat`), biases at zero.

Usage:
  stitch = Stitch(out_shape=(8, 8, 16))           # the receiver tap's shape, no batch
  params = stitch.init(key, h_send)["params"]
  h_recv = stitch.apply({"params": params}, h_send)
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jatlas.nets.conv import Conv2D


def adapter(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[str, int]:
  """("dense" | "conv" | "down" | "up", spatial ratio) for these shapes (no batch axis)."""
  if len(out_shape) == 1:
    return "dense", 1
  if len(in_shape) != 3 or len(out_shape) != 3:
    raise ValueError(f"stitch from {tuple(in_shape)} to {tuple(out_shape)}: only feature "
                     f"maps (H, W, C) -> maps, or anything -> vectors (D,)")
  (hs, ws, _), (hr, wr, _) = in_shape, out_shape
  big, small = (hs, hr) if hs >= hr else (hr, hs)
  if big % small or (ws * hr != wr * hs):
    raise ValueError(f"stitch from {tuple(in_shape)} to {tuple(out_shape)}: the spatial "
                     f"sizes must differ by one whole factor on both axes")
  ratio = big // small
  return ("conv" if ratio == 1 else "down" if hs > hr else "up"), ratio


def lecun_normal_flat(key, shape, dtype=jnp.float32):
  """flax's lecun_normal (truncated normal, variance 1 / fan_in, fan_in = all axes but
  the last), drawn as a flat vector of the next power-of-two length: XLA:CPU compiles a
  threefry draw anew for every shape (seconds each), and a stitching matrix has many
  kernel shapes but few such lengths."""
  n = math.prod(shape)
  z = jax.random.truncated_normal(key, -2.0, 2.0, (1 << max(n - 1, 0).bit_length(),), dtype)
  # 0.8796...: the standard deviation of a unit normal truncated to [-2, 2]
  return z[:n].reshape(shape) * (math.sqrt(1 / math.prod(shape[:-1])) / .87962566103423978)


class Stitch(nn.Module):
  out_shape: Sequence[int]
  kernel: int = 1
  norm: bool = False

  @nn.compact
  def __call__(self, h):
    kind, ratio = adapter(h.shape[1:], self.out_shape)
    if self.norm:
      h = nn.LayerNorm(name="norm_in")(h)
    if kind == "dense":
      return nn.Dense(self.out_shape[0], kernel_init=lecun_normal_flat, name="dense")(
          h.reshape(len(h), -1))
    c, init = self.out_shape[-1], lecun_normal_flat
    if kind == "conv":
      h = Conv2D(c, (self.kernel, self.kernel), padding=self.kernel // 2, kernel_init=init,
                 name="conv")(h)
    elif kind == "down":
      h = Conv2D(c, (ratio, ratio), strides=(ratio, ratio), kernel_init=init, name="conv")(h)
    else:
      h = jnp.repeat(jnp.repeat(h, ratio, axis=1), ratio, axis=2)
      h = Conv2D(c, (1, 1), kernel_init=init, name="conv")(h)
    return nn.LayerNorm(name="norm_out")(h) if self.norm else h
