"""2-D convolution and pooling whose lowering is chosen per backend.

`jax.vmap` over `lax.conv` lowers to a grouped convolution, which XLA:CPU runs
several times slower than matmul formulations. On CPU the default lowering
("im2col") therefore computes each member's convolution from shifted slices
and matmuls, with a hand-written backward pass and a vmap rule that runs a
population's members one after another so that each member's patch buffers
stay in cache (see benchmarks/README.md for the measurements). Stride-1
convolutions of float32 run as compiled C++ kernels (`conv_cpu`, built on first
use) where a C++ compiler is available, else as XLA slices and matmuls. On GPU/TPU the
grouped convolution ("xla") is the natural choice. Parameters are named and
laid out exactly like `flax.linen.Conv` (kernel HWIO, bias), so checkpoints and
converters do not care which lowering ran.

Lowerings:
  "im2col"     CPU default; first-order reverse-mode autodiff only (custom VJP).
  "im2col_ad"  the same arithmetic traced by plain JAX autodiff (forward mode,
               higher-order derivatives), without the member loop.
  "xla"        `lax.conv_general_dilated`.

Usage:
  y_NHWO = Conv2D(16, (5, 5), padding=0)(x_NHWC)
  y_NHWO = conv2d(x_NHWC, w_HWIO, b_O, strides=(1, 1), padding=((2, 2), (2, 2)))
"""
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

from jatlas.member_loop import loop_devices, member_map
from jatlas.nets import conv_cpu

LOWERINGS = ("im2col", "im2col_ad", "xla")


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


# ---------------------------------------------------------------- one member
# Shapes: x_NHWC input, xp padded input, w_HWIO kernel, g_NHWO output cotangent,
# K = kh*kw*C_in patch length in (i, j, c) order (= w_HWIO.reshape(K, O) rows).

def _taps(size, k, s):
  """Output length of a valid window k with stride s over `size`."""
  return (size - k) // s + 1


def _shift(a, i, j, n_h, n_w, s, h_axis):
  """a[..., i + s_h*y, j + s_w*x, ...] for y < n_h, x < n_w (H at h_axis, W next)."""
  idx = [slice(None)] * a.ndim
  idx[h_axis] = slice(i, i + s[0] * (n_h - 1) + 1, s[0])
  idx[h_axis + 1] = slice(j, j + s[1] * (n_w - 1) + 1, s[1])
  return a[tuple(idx)]


def _patches_NHWK(xp, kh, kw, s):
  """(N, Ho, Wo, K) patches. Stacking kw slices, then kh of those, is several times
  faster on XLA:CPU than one 25-way concatenate along the channel axis."""
  ho, wo = _taps(xp.shape[1], kh, s[0]), _taps(xp.shape[2], kw, s[1])
  rows = [jnp.stack([_shift(xp, i, j, ho, wo, s, 1) for j in range(kw)], axis=3)
          for i in range(kh)]
  return jnp.stack(rows, axis=3).reshape(xp.shape[0], ho, wo, -1)


def _patches_KT(xp, kh, kw, s):
  """(K, N*Ho*Wo) patches built from contiguous (N, Ho, Wo) slabs of the
  channel-major input; the layout the weight-gradient matmul wants."""
  ho, wo = _taps(xp.shape[1], kh, s[0]), _taps(xp.shape[2], kw, s[1])
  xt_CNHW = jnp.transpose(xp, (3, 0, 1, 2))
  rows = [jnp.stack([_shift(xt_CNHW, i, j, ho, wo, s, 2) for j in range(kw)], axis=0)
          for i in range(kh)]
  return jnp.stack(rows, axis=0).reshape(kh * kw * xp.shape[3], -1)


def _pad(x, pads):
  return jnp.pad(x, [(0, 0), *pads, (0, 0)])


PATCH_BYTES = 512 * 1024  # patch buffer per image chunk: about a quarter of L2


def _n_chunks(n, patch_bytes_per_image):
  """Number of equal image chunks whose patch buffer fits PATCH_BYTES."""
  want = min(n, max(1, -(-n * patch_bytes_per_image // PATCH_BYTES)))
  return next(c for c in range(want, n + 1) if n % c == 0)


def _direct(x, s, kw, allowed):
  """Whether the compiled CPU kernels (conv_cpu) take this convolution; not
  `allowed` where the op is vmapped over devices (XLA cannot partition them)."""
  return allowed and s == (1, 1) and kw <= conv_cpu.MAX_KERNEL and \
      x.dtype == jnp.float32 and conv_cpu.available()


def _forward(x, w, b, s, pads, direct=True):
  kh, kw, c_in, c_out = w.shape
  xp = _pad(x, pads)
  if _direct(x, s, kw, direct):
    return conv_cpu.forward(xp, w, b)
  ho, wo = _taps(xp.shape[1], kh, s[0]), _taps(xp.shape[2], kw, s[1])
  # the bias is added where y is stored, so the activation that follows sees a flat
  # elementwise op (a bias broadcast over 6 or 16 minor channels does not vectorise)
  add_b = (lambda y: y) if b is None else (lambda y: y + b)
  if c_in == 1:  # no contraction over channels: kh*kw fused multiply-adds beat a K=25 matmul
    fma = lambda xi: add_b(sum(_shift(xi, i, j, ho, wo, s, 1) * w[i, j, 0]
                               for i in range(kh) for j in range(kw)))
    if x.shape[0] % 2:
      return fma(xp)
    # a loop of two image halves stores y: XLA:CPU would otherwise fuse the
    # following activation into the sum and emit unvectorised code (5x slower)
    return lax.map(fma, xp.reshape(2, -1, *xp.shape[1:])).reshape(x.shape[0], ho, wo, c_out)
  w_KO = w.reshape(kh * kw * c_in, c_out)
  nc = _n_chunks(x.shape[0], ho * wo * kh * kw * c_in * x.dtype.itemsize)
  if nc == 1:
    return add_b(_patches_NHWK(xp, kh, kw, s) @ w_KO)
  # each image chunk's patches are multiplied while they are in cache
  y = lax.map(lambda xi: add_b(_patches_NHWK(xi, kh, kw, s) @ w_KO),
              xp.reshape(nc, -1, *xp.shape[1:]))
  return y.reshape(x.shape[0], *y.shape[2:])


def _channel_sum(g):
  """Sum over every axis but the last. Rows are first folded into the minor axis:
  a reduction keeping a minor axis of 6 or 16 channels does not vectorise (conv1's
  bias gradient: 0.14 -> 0.08 ms per member-step)."""
  c = g.shape[-1]
  r = next(d for d in (16, 8, 4, 2, 1) if (g.size // c) % d == 0)
  return g.reshape(-1, r * c).sum(0).reshape(r, c).sum(0)


def _weight_grad(x, g, w_shape, s, pads, direct=True):
  """(dW_HWIO, db_O) = cotangents of the kernel and bias."""
  kh, kw, c_in, c_out = w_shape
  xp = _pad(x, pads)
  if _direct(x, s, kw, direct):
    return conv_cpu.weight_grad(xp, g, w_shape)
  n = x.shape[0]
  nc = _n_chunks(n, g.shape[1] * g.shape[2] * kh * kw * c_in * x.dtype.itemsize)
  if nc > 1:  # accumulate over image chunks whose patches stay in cache
    xc, gc = xp.reshape(nc, -1, *xp.shape[1:]), g.reshape(nc, -1, *g.shape[1:])
    body = lambda i, acc: acc + _patches_KT(xc[i], kh, kw, s) @ gc[i].reshape(-1, c_out)
    dw = lax.fori_loop(0, nc, body, jnp.zeros((kh * kw * c_in, c_out), g.dtype))
  else:
    dw = _patches_KT(xp, kh, kw, s) @ g.reshape(-1, c_out)
  return dw.reshape(w_shape), _channel_sum(g)


def _input_grad(g, w, x_shape, s, pads, direct=True):
  """Cotangent of the input: patch cotangents (one matmul) scattered back with
  kh*kw strided in-place adds, in channel-major layout."""
  kh, kw, c_in, c_out = w.shape
  n, h, wd, _ = x_shape
  hp, wp = h + sum(pads[0]), wd + sum(pads[1])
  ho, wo = g.shape[1:3]
  if _direct(g, s, kw, direct):
    dxp = conv_cpu.input_grad(g, w, (n, hp, wp, c_in))
    return dxp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + wd]
  dp = (w.reshape(-1, c_out) @ g.reshape(-1, c_out).T).reshape(kh, kw, c_in, n, ho, wo)
  acc_CNHW = jnp.zeros((c_in, n, hp, wp), g.dtype)
  for i in range(kh):
    for j in range(kw):
      idx = (slice(None), slice(None), slice(i, i + s[0] * (ho - 1) + 1, s[0]),
             slice(j, j + s[1] * (wo - 1) + 1, s[1]))
      acc_CNHW = acc_CNHW.at[idx].add(dp[i, j])
  acc_CNHW = acc_CNHW[:, :, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + wd]
  return jnp.transpose(acc_CNHW, (1, 2, 3, 0))


# ------------------------------------------------------------ member loop

def _member_looped(fn, shortcut):
  """`fn(*args, direct)` whose vmap runs `shortcut(m, batched, *args)` if that returns
  a result, else loops over the members (`member_map`), so each member's patch
  buffers stay in cache. Shortcuts cover a shared argument, where one wider op beats
  a loop. Where the loop vmaps over devices, `fn` runs without the C++ kernels."""
  op = custom_vmap(lambda *args: fn(*args, True))

  @op.def_vmap
  def _rule(m, batched, *args):
    out = shortcut(m, batched, *args)
    if out is None:
      full = [a if bt else jnp.broadcast_to(a, (m,) + a.shape) for a, bt in zip(args, batched)]
      direct = loop_devices(m) == 1
      out = member_map(lambda *a: fn(*a, direct), *full)
    return out, jax.tree.map(lambda _: True, out)

  return op


@functools.lru_cache(maxsize=None)
def _im2col_op(x_shape, w_shape, s, pads):
  """custom_vjp(custom_vmap) convolution for one static configuration."""
  c_out = w_shape[3]

  def fwd_shortcut(m, batched, x, w, b):
    xb, wb, bb = batched
    if xb and not wb and not bb:  # shared parameters: the members are just more images
      y = _forward(x.reshape(-1, *x.shape[2:]), w, b, s, pads)
      return y.reshape(m, -1, *y.shape[1:])
    if wb and not xb:  # shared input: one wide matmul over all members' filters
      w_cat = jnp.moveaxis(w, 0, -2).reshape(*w_shape[:3], m * c_out)
      b_cat = jnp.broadcast_to(b, (m, c_out)).reshape(-1)
      y = _forward(x, w_cat, b_cat, s, pads)
      return jnp.moveaxis(y.reshape(*y.shape[:3], m, c_out), 3, 0)
    return None

  def wgrad_shortcut(m, batched, x, g):
    if batched[1] and not batched[0]:  # shared input: one wide matmul over all cotangents
      g_cat = jnp.moveaxis(g, 0, -2).reshape(*g.shape[1:4], m * c_out)
      dw, db = _weight_grad(x, g_cat, (*w_shape[:3], m * c_out), s, pads)
      return jnp.moveaxis(dw.reshape(*w_shape[:3], m, c_out), 3, 0), db.reshape(m, c_out)
    return None

  def igrad_shortcut(m, batched, g, w):
    if batched[0] and not batched[1]:  # shared kernel: the members are just more images
      dx = _input_grad(g.reshape(-1, *g.shape[2:]), w, (m * x_shape[0], *x_shape[1:]), s, pads)
      return dx.reshape(m, *x_shape)
    return None

  fwd = _member_looped(lambda x, w, b, d: _forward(x, w, b, s, pads, d), fwd_shortcut)
  wgrad = _member_looped(lambda x, g, d: _weight_grad(x, g, w_shape, s, pads, d), wgrad_shortcut)
  igrad = _member_looped(lambda g, w, d: _input_grad(g, w, x_shape, s, pads, d), igrad_shortcut)

  @jax.custom_vjp
  def conv(x, w, b):
    return fwd(x, w, b)

  def conv_fwd(x, w, b):
    return fwd(x, w, b), (x, w)

  def conv_bwd(res, g):
    x, w = res
    dw, db = wgrad(x, g)
    return igrad(g, w), dw, db

  conv.defvjp(conv_fwd, conv_bwd)
  return conv


def conv_im2col(x_NHWC, w_HWIO, b_O, strides, pads):
  """Fast CPU convolution (custom VJP and vmap rule); b_O may be None."""
  if b_O is None:  # its cotangent is computed and dropped: one small reduction
    b_O = jnp.zeros((w_HWIO.shape[-1],), x_NHWC.dtype)
  op = _im2col_op(tuple(x_NHWC.shape), tuple(w_HWIO.shape), tuple(strides),
                  tuple(map(tuple, pads)))
  return op(x_NHWC, w_HWIO, b_O)


def conv_im2col_ad(x_NHWC, w_HWIO, b_O, strides, pads):
  """The same forward arithmetic, differentiated by JAX (any order, any mode)."""
  kh, kw, c_in, c_out = w_HWIO.shape
  y = _patches_NHWK(_pad(x_NHWC, pads), kh, kw, tuple(strides)) @ w_HWIO.reshape(-1, c_out)
  return y if b_O is None else y + b_O


def conv_xla(x_NHWC, w_HWIO, b_O, strides, pads):
  y = lax.conv_general_dilated(x_NHWC, w_HWIO, tuple(strides), pads,
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y if b_O is None else y + b_O


_LOWERED = {"im2col": conv_im2col, "im2col_ad": conv_im2col_ad, "xla": conv_xla}


def conv2d(x_NHWC, w_HWIO, b_O=None, strides=(1, 1), padding=0, lowering: str = "auto"):
  """y_NHWO = conv(x_NHWC, w_HWIO) + b_O; padding as in `Conv2D`."""
  lowering = default_lowering() if lowering == "auto" else lowering
  if lowering not in _LOWERED:
    raise ValueError(f"lowering must be 'auto' or one of {LOWERINGS}, got {lowering!r}")
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
