"""2-D convolution and pooling whose lowering is chosen per backend.

`conv2d` (and the `Conv2D` module) dispatch to a lowering by name. Parameters are
named and laid out exactly like `flax.linen.Conv` (kernel HWIO, bias), so
checkpoints and converters do not care which lowering ran.

Lowerings:
  "xla"        `lax.conv_general_dilated`; the default on GPU/TPU.
  "im2col"     CPU default: im2col arithmetic with a custom VJP, a vmap rule that
               loops over a population's members, and compiled C++ kernels;
               first-order reverse-mode autodiff only.
  "im2col_ad"  the same arithmetic traced by plain JAX autodiff (forward mode,
               higher-order derivatives), without the member loop.
The two im2col lowerings live in `jatlas.nets.cpu`, which registers them
(`register_lowering`) when it is imported. This module imports it lazily, the
first time one of them is requested, never at module level: a GPU/TPU program
does not load the CPU path, and `jatlas.nets.cpu` can import this module to
register without a cycle. `prepare()` does a lowering's one-time setup (on CPU:
compiling the C++ kernels) before the first trace.

Usage:
  conv.prepare()  # optional, before tracing: on CPU builds the kernels now
  y_NHWO = Conv2D(16, (5, 5), padding=0)(x_NHWC)
  y_NHWO = conv2d(x_NHWC, w_HWIO, b_O, strides=(1, 1), padding=((2, 2), (2, 2)))
"""
import difflib
import functools
import importlib
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

LOWERINGS = ("im2col", "im2col_ad", "xla")
# lowering -> the package that registers it on import (and defines prepare())
_PACKAGES = {"im2col": "jatlas.nets.cpu", "im2col_ad": "jatlas.nets.cpu"}


def default_lowering() -> str:
  return "im2col" if jax.default_backend() == "cpu" else "xla"


def _pad_pairs(padding, kernel_size):
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return ((0, 0), (0, 0))
    if padding.upper() == "SAME":  # symmetric for odd kernels, as torch padding=k//2
      return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)
    raise ValueError(f"padding must be 'SAME', 'VALID' or ints, got {padding!r}")
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def conv_xla(x_NHWC, w_HWIO, b_O, strides, pads):
  y = lax.conv_general_dilated(x_NHWC, w_HWIO, tuple(strides), pads,
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y if b_O is None else y + b_O


# name -> fn(x_NHWC, w_HWIO, b_O or None, strides, pads) with pads ((top, bottom), (left, right))
_LOWERED: dict[str, Callable] = {"xla": conv_xla}


def register_lowering(name: str, fn: Callable) -> None:
  """Makes `conv2d(..., lowering=name)` call fn(x_NHWC, w_HWIO, b_O, strides, pads):
  b_O may be None, strides a pair, pads ((top, bottom), (left, right))."""
  _LOWERED[name] = fn


def _resolve(lowering: str) -> str:
  """The concrete lowering name, its package imported (and so registered)."""
  name = default_lowering() if lowering == "auto" else lowering
  if name not in _LOWERED and name in _PACKAGES:
    importlib.import_module(_PACKAGES[name])
  if name not in _LOWERED:
    known = sorted({*_LOWERED, *_PACKAGES})
    close = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"lowering must be 'auto' or one of {tuple(known)}, got {lowering!r}{hint}")
  return name


def prepare(lowering: str = "auto") -> None:
  """Does `lowering`'s one-time setup now, outside any trace: for the CPU lowerings,
  compiling (or loading from the cache) the C++ kernels, which would otherwise happen
  inside the first jit trace. Nothing for "xla". Entry points and engines call it
  before tracing; skipping it only moves the work into that trace."""
  name = _resolve(lowering)
  if name in _PACKAGES:
    importlib.import_module(_PACKAGES[name]).prepare()


def conv2d(x_NHWC, w_HWIO, b_O=None, strides=(1, 1), padding=0, lowering: str = "auto"):
  """y_NHWO = conv(x_NHWC, w_HWIO) + b_O; padding as in `Conv2D`."""
  lowering = _resolve(lowering)
  if x_NHWC.ndim != 4:
    raise ValueError(f"conv2d expects NHWC input of rank 4, got shape {x_NHWC.shape}")
  if x_NHWC.shape[-1] != w_HWIO.shape[2]:
    raise ValueError(f"input has {x_NHWC.shape[-1]} channels, kernel {w_HWIO.shape} "
                     f"(HWIO) expects {w_HWIO.shape[2]}")
  pads = _pad_pairs(padding, w_HWIO.shape[:2])
  return _LOWERED[lowering](x_NHWC, w_HWIO, b_O, tuple(strides), pads)


class Conv2D(nn.Module):
  """Drop-in for `nn.Conv` on NHWC inputs; padding is torch-style (ints) or SAME/VALID."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: int | str | Sequence = 0
  use_bias: bool = True
  lowering: str = "auto"  # "auto" | "im2col" | "im2col_ad" | "xla"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x_NHWC):
    kh, kw = self.kernel_size
    c_in = x_NHWC.shape[-1]
    w = self.param("kernel", self.kernel_init, (kh, kw, c_in, self.features))
    b = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    return conv2d(x_NHWC, w.astype(x_NHWC.dtype), None if b is None else b.astype(x_NHWC.dtype),
                  self.strides, self.padding, self.lowering)


def _windows(x_NHWC, window):
  """The window**2 strided views whose elementwise reduction is the pooled map."""
  h2, w2 = x_NHWC.shape[1] // window, x_NHWC.shape[2] // window
  x = x_NHWC[:, :h2 * window, :w2 * window, :]
  return [x[:, i::window, j::window, :] for i in range(window) for j in range(window)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def avg_pool(x_NHWC, window: int = 2):
  """Non-overlapping average pooling (stride = window), floor on odd sizes.

  A sum of strided slices: one fused loop on XLA:CPU, faster than reshape + mean.
  Its gradient is a broadcast that fuses into the consumer; autodiff of the
  slices would add window**2 padded copies (0.4 ms per LeNet-5 member-step)."""
  return sum(_windows(x_NHWC, window)) * (1.0 / window**2)


def _avg_pool_fwd(x_NHWC, window):
  return avg_pool(x_NHWC, window), x_NHWC.shape


def _avg_pool_bwd(window, shape, g):
  n, h2, w2, c = g.shape
  g = jnp.broadcast_to(g[:, :, None, :, None, :] * (1.0 / window**2), (n, h2, window, w2, window, c))
  g = g.reshape(n, h2 * window, w2 * window, c)
  if g.shape != shape:  # floor on odd sizes: the cut rows/columns get no gradient
    g = jnp.pad(g, [(0, 0), (0, shape[1] - g.shape[1]), (0, shape[2] - g.shape[2]), (0, 0)])
  return (g,)


avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def max_pool(x_NHWC, window: int = 2):
  """Non-overlapping max pooling (stride = window), floor on odd sizes."""
  n, h, w, c = x_NHWC.shape
  h2, w2 = h // window, w // window
  x = x_NHWC[:, :h2 * window, :w2 * window, :]
  return x.reshape(n, h2, window, w2, window, c).max(axis=(2, 4))
