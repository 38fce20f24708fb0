"""Conv2D lowerings (im2col, im2col_ad, xla) against a float64 NumPy convolution:
forward, gradients (custom VJP), vmapped populations (members, shared weights,
shared inputs), a sharded population, the flax.linen.Conv layout, pooling, and
the lowering registry (jatlas.nets.cpu registers the im2col lowerings)."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jatlas.nets import conv

TOL = dict(rtol=1e-5, atol=1e-5)
LOWERINGS = ("im2col", "im2col_ad", "xla")

# (x_NHWC shape, w_HWIO shape, strides, padding as Conv2D takes it)
CASES = {
    "c1_pad2": ((2, 8, 8, 1), (5, 5, 1, 3), (1, 1), 2),           # LeNet conv1 (direct form)
    "c3_same": ((2, 7, 6, 3), (3, 3, 3, 4), (1, 1), "SAME"),
    "c2_stride_asym": ((2, 9, 8, 2), (3, 2, 2, 3), (2, 3), ((2, 1), (0, 2))),
    "c1_stride": ((1, 9, 9, 1), (3, 3, 1, 2), (2, 2), ((0, 0), (1, 1))),
    "c4_valid_1x1_out": ((3, 5, 5, 4), (5, 5, 4, 6), (1, 1), "VALID"),
}


def np_pads(padding, kernel):
  return [tuple(p) for p in conv._pad_pairs(padding, kernel)]


def np_conv(x, w, b, strides, padding):
  """Direct float64 convolution: y[n,y,x,o] = sum_{i,j,c} xp[n, sy*y+i, sx*x+j, c] w[i,j,c,o]."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  (pt, pb), (pl, pr) = np_pads(padding, w.shape[:2])
  xp = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
  kh, kw, _, c_out = w.shape
  sh, sw = strides
  ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
  y = np.zeros((x.shape[0], ho, wo, c_out))
  for i in range(kh):
    for j in range(kw):
      win = xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
      y += np.einsum("nhwc,co->nhwo", win, w[i, j])
  return y if b is None else y + np.asarray(b, np.float64)


def np_conv_vjp(x, w, g, strides, padding):
  """(dx, dw, db) of sum(conv(x, w, b) * g), by the transposed loops of np_conv."""
  x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
  (pt, pb), (pl, pr) = np_pads(padding, w.shape[:2])
  xp = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
  kh, kw = w.shape[:2]
  sh, sw = strides
  ho, wo = g.shape[1:3]
  dxp, dw = np.zeros_like(xp), np.zeros_like(w)
  for i in range(kh):
    for j in range(kw):
      win = (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
      dw[i, j] = np.einsum("nhwc,nhwo->co", xp[win], g)
      dxp[win] += np.einsum("nhwo,co->nhwc", g, w[i, j])
  dx = dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2]]
  return dx, dw, g.sum((0, 1, 2))


def rand(key, shape, scale=0.5):
  return scale * jax.random.normal(jax.random.key(key), shape, jnp.float32)


def case_arrays(name, members=None):
  xs, ws, _, _ = CASES[name]
  lead = () if members is None else (members,)
  return rand(1, lead + xs), rand(2, lead + ws), rand(3, lead + ws[-1:])


@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("name", CASES)
def test_forward_and_grad_match_numpy(name, lowering):
  _, _, strides, padding = CASES[name]
  x, w, b = case_arrays(name)
  want_y = np_conv(x, w, b, strides, padding)
  g = rand(4, want_y.shape)

  @jax.jit
  def value_and_vjp(x, w, b, g):
    y, vjp = jax.vjp(lambda *a: conv.conv2d(*a, strides, padding, lowering), x, w, b)
    return y, vjp(g)

  y, grads = value_and_vjp(x, w, b, g)
  np.testing.assert_allclose(y, want_y, **TOL)
  for got, want in zip(grads, np_conv_vjp(x, w, g, strides, padding)):
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("in_axes", [(0, 0, 0), (0, None, None), (None, 0, 0), (0, 0, None)],
                         ids=["members", "shared_params", "shared_input", "shared_bias"])
@pytest.mark.parametrize("name", ["c1_pad2", "c2_stride_asym"])
def test_vmapped_population_matches_per_member(name, in_axes):
  """The im2col vmap rules (member loop, folded batch, wide matmul) give each
  member's own value and gradients."""
  _, _, strides, padding = CASES[name]
  m = 3
  full = case_arrays(name, members=m)
  args = [a if ax == 0 else a[0] for a, ax in zip(full, in_axes)]
  g = rand(5, (m,) + np_conv(*[a[0] for a in full], strides, padding).shape)

  def member(x, w, b, g, lowering):
    loss = lambda x, w, b: jnp.sum(jnp.sin(conv.conv2d(x, w, b, strides, padding, lowering)) * g)
    return jax.value_and_grad(loss, (0, 1, 2))(x, w, b)

  got = jax.jit(jax.vmap(lambda *a: member(*a, "im2col"), in_axes=(*in_axes, 0)))(*args, g)
  want = jax.vmap(lambda *a: member(*a, "xla"), in_axes=(*in_axes, 0))(*args, g)
  for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, e, **TOL)


def test_sharded_population_stays_local():
  """A population sharded over devices is looped per device: same numbers, and
  no member is gathered across devices (conftest provides 8 CPU devices)."""
  n_dev = jax.device_count()
  mesh = Mesh(np.asarray(jax.devices()), ("pop",))
  m = 2 * n_dev
  x, w, b = case_arrays("c2_stride_asym", members=m)
  _, _, strides, padding = CASES["c2_stride_asym"]

  def member(x, w, b, lowering):
    loss = lambda w, b: jnp.sum(jnp.tanh(conv.conv2d(x, w, b, strides, padding, lowering)))
    return jax.grad(loss, (0, 1))(w, b)

  shard = NamedSharding(mesh, P("pop"))
  args = jax.device_put((x, w, b), shard)
  fn = jax.jit(jax.vmap(lambda *a: member(*a, "im2col")))
  hlo = fn.lower(*args).compile().as_text()
  assert "all-gather" not in hlo and "all-to-all" not in hlo
  got = fn(*args)
  want = jax.vmap(lambda *a: member(*a, "xla"))(x, w, b)
  for a, e in zip(got, want):
    np.testing.assert_allclose(a, e, **TOL)
  assert got[0].sharding.spec == P("pop")


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_conv2d_module_matches_flax_conv(lowering):
  """Same parameter tree (kernel HWIO + bias) and outputs as flax.linen.Conv."""
  x = rand(6, (2, 9, 9, 3))
  ours = conv.Conv2D(4, (3, 3), strides=(2, 2), padding=1, lowering=lowering)
  ref = nn.Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  variables = ref.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # nonzero bias
  chex.assert_trees_all_equal_shapes(ours.init(jax.random.key(0), x), variables)
  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), **TOL)
  no_bias = conv.Conv2D(4, (3, 3), use_bias=False, lowering=lowering)
  assert set(no_bias.init(jax.random.key(0), x)["params"]) == {"kernel"}


def test_im2col_ad_supports_forward_mode():
  x, w, b = case_arrays("c3_same")
  f = lambda w: conv.conv2d(x, w, b, (1, 1), "SAME", "im2col_ad")
  ref = lambda w: conv.conv2d(x, w, b, (1, 1), "SAME", "xla")
  t = rand(7, w.shape)
  np.testing.assert_allclose(jax.jvp(f, (w,), (t,))[1], jax.jvp(ref, (w,), (t,))[1], **TOL)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 5, 2)])
def test_pooling_matches_numpy(shape):
  x = rand(8, shape)
  h2, w2 = shape[1] // 2, shape[2] // 2
  win = np.asarray(x, np.float64)[:, :2 * h2, :2 * w2].reshape(shape[0], h2, 2, w2, 2, shape[3])
  np.testing.assert_allclose(conv.avg_pool(x), win.mean((2, 4)), **TOL)
  np.testing.assert_allclose(conv.max_pool(x), win.max((2, 4)), **TOL)
  g = jax.grad(lambda x: jnp.sum(conv.avg_pool(x) ** 2))(x)
  want = np.zeros(shape)
  want[:, :2 * h2, :2 * w2] = np.repeat(np.repeat(2 * win.mean((2, 4)) / 4, 2, 1), 2, 2)
  np.testing.assert_allclose(g, want, **TOL)


def test_bad_arguments_name_the_problem():
  x, w, b = case_arrays("c3_same")
  with pytest.raises(ValueError, match="lowering"):
    conv.conv2d(x, w, b, lowering="cudnn")
  with pytest.raises(ValueError, match="did you mean 'im2col'"):
    conv.conv2d(x, w, b, lowering="im2cl")
  with pytest.raises(ValueError, match="channels"):
    conv.conv2d(x[..., :2], w, b)
  with pytest.raises(ValueError, match="padding"):
    conv.conv2d(x, w, b, padding="FULL")


def test_registered_lowering_receives_resolved_arguments(monkeypatch):
  monkeypatch.setattr(conv, "_LOWERED", dict(conv._LOWERED))
  seen = []

  def lowering(x_NHWC, w_HWIO, b_O, strides, pads):
    seen.append((b_O, strides, pads))
    return conv.conv_xla(x_NHWC, w_HWIO, b_O, strides, pads)

  conv.register_lowering("recorded", lowering)
  x, w, _ = case_arrays("c3_same")
  y = conv.Conv2D(4, (3, 3), strides=[1, 1], padding="SAME", use_bias=False,
                  lowering="recorded").apply({"params": {"kernel": w}}, x)
  assert seen == [(None, (1, 1), ((1, 1), (1, 1)))]
  np.testing.assert_allclose(y, np_conv(x, w, None, (1, 1), "SAME"), **TOL)
