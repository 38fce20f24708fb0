"""The im2col convolution lowerings for CPU: patches, forward and gradient formulas,
the custom VJP, and vmap rules that run a population's members one after another.

`jax.vmap` over `lax.conv` lowers to a grouped convolution, which XLA:CPU runs
several times slower than matmul formulations. "im2col" therefore computes each
member's convolution from shifted slices and matmuls, with a hand-written backward
pass and a vmap rule that loops over the members (`member_loop.member_map`) so
that each member's patch buffers stay in cache (benchmarks/README.md has the
measurements). Stride-1 float32 convolutions run as the compiled C++ kernels
(`kernels`) where a C++ compiler is available, else as XLA slices and matmuls.
"im2col_ad" is the same forward arithmetic left to JAX autodiff (any order, forward
mode), without the member loop. Both take pads already resolved by
`jatlas.nets.conv.conv2d`, which dispatches to them.

Usage:
  y_NHWO = conv_im2col(x_NHWC, w_HWIO, b_O, (1, 1), ((2, 2), (2, 2)))  # b_O may be None
  y_NHWO = conv_im2col_ad(x_NHWC, w_HWIO, b_O, (1, 1), ((2, 2), (2, 2)))
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

from jatlas.nets.cpu import kernels
from jatlas.nets.cpu.member_loop import loop_devices, member_map


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
  """Whether the compiled CPU kernels (`kernels`) take this convolution; not
  `allowed` where the op is vmapped over devices (XLA cannot partition them)."""
  return allowed and s == (1, 1) and kw <= kernels.MAX_KERNEL and \
      x.dtype == jnp.float32 and kernels.available()


def _forward(x, w, b, s, pads, direct=True):
  kh, kw, c_in, c_out = w.shape
  xp = _pad(x, pads)
  if _direct(x, s, kw, direct):
    return kernels.forward(xp, w, b)
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
    return kernels.weight_grad(xp, g, w_shape)
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
    dxp = kernels.input_grad(g, w, (n, hp, wp, c_in))
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
