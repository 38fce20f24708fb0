"""2-D convolution and pooling whose lowering is chosen per backend.

`jax.vmap` over `lax.conv` lowers to a grouped convolution, which XLA:CPU runs
several times slower than an im2col formulation (shifted slices + one matmul).
On GPU/TPU the grouped convolution is the natural choice. Parameters are named
and laid out exactly like `flax.linen.Conv` (kernel HWIO, bias), so checkpoints
and converters do not care which lowering ran.

Usage:
  y_NHWO = Conv2D(16, (5, 5), padding=0)(x_NHWC)
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def default_lowering() -> str:
  return "im2col" if jax.default_backend() == "cpu" else "xla"


def _pad_pairs(padding, kernel_size):
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return [(0, 0), (0, 0)]
    if padding.upper() == "SAME":  # symmetric for odd kernels, as torch padding=k//2
      return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size]
    raise ValueError(f"padding must be 'SAME', 'VALID' or ints, got {padding!r}")
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def conv_im2col(x_NHWC, w_HWIO, strides, pads):
  """Convolution as shifted slices + a single matmul (fast under vmap on CPU)."""
  kh, kw, c_in, c_out = w_HWIO.shape
  x = jnp.pad(x_NHWC, [(0, 0), *pads, (0, 0)])
  sh, sw = strides
  h_out = (x.shape[1] - kh) // sh + 1
  w_out = (x.shape[2] - kw) // sw + 1
  cols = [x[:, i:i + sh * (h_out - 1) + 1:sh, j:j + sw * (w_out - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  patches_NHWK = jnp.concatenate(cols, axis=-1)  # K = kh*kw*c_in, (i, j, c) order
  return patches_NHWK @ w_HWIO.reshape(kh * kw * c_in, c_out)


def conv_xla(x_NHWC, w_HWIO, strides, pads):
  return jax.lax.conv_general_dilated(
      x_NHWC, w_HWIO, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv2D(nn.Module):
  """Drop-in for `nn.Conv` on NHWC inputs; padding is torch-style (ints) or SAME/VALID."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: int | str | Sequence = 0
  use_bias: bool = True
  lowering: str = "auto"  # "auto" | "im2col" | "xla"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x_NHWC):
    kh, kw = self.kernel_size
    c_in = x_NHWC.shape[-1]
    w = self.param("kernel", self.kernel_init, (kh, kw, c_in, self.features))
    pads = _pad_pairs(self.padding, self.kernel_size)
    lowering = default_lowering() if self.lowering == "auto" else self.lowering
    fn = {"im2col": conv_im2col, "xla": conv_xla}[lowering]
    y = fn(x_NHWC, w.astype(x_NHWC.dtype), tuple(self.strides), pads)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
    return y


def avg_pool(x_NHWC, window: int = 2):
  """Non-overlapping average pooling (stride = window) by reshape + mean."""
  n, h, w, c = x_NHWC.shape
  h2, w2 = h // window, w // window
  x = x_NHWC[:, :h2 * window, :w2 * window, :]
  return x.reshape(n, h2, window, w2, window, c).mean(axis=(2, 4))


def max_pool(x_NHWC, window: int = 2):
  n, h, w, c = x_NHWC.shape
  h2, w2 = h // window, w // window
  x = x_NHWC[:, :h2 * window, :w2 * window, :]
  return x.reshape(n, h2, window, w2, window, c).max(axis=(2, 4))
