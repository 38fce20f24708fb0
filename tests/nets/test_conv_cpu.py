"""The compiled CPU convolution kernels (jatlas/nets/cpu/conv_cpu.cc) against XLA's own
convolution and its VJP, on every code path (pixel pairs for one input channel,
row tiles, pixel tiles of 1/2/4 channel blocks), the member loop calling them, and
the fallback without a compiler. The build cache and `prepare()`: tests/nets/cpu/."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jatlas.nets import conv
from jatlas.nets.cpu import kernels

pytestmark = pytest.mark.skipif(not kernels.load(), reason="no C++ compiler")

# (N, Hp, Wp, C) padded input, (KH, KW, C, O) kernel
SHAPES = {
    "lenet_conv1_pairs": ((4, 36, 36, 1), (5, 5, 1, 6)),
    "pairs_odd_width_o1": ((3, 7, 10, 1), (3, 4, 1, 1)),
    "pairs_o8_kw7": ((2, 9, 12, 1), (2, 7, 1, 8)),
    "one_channel_o9": ((2, 8, 8, 1), (3, 3, 1, 9)),
    "lenet_conv2_rows_c6": ((3, 16, 16, 6), (5, 5, 6, 16)),
    "rows_c16": ((2, 14, 15, 16), (3, 3, 16, 16)),
    "lenet_conv3_4_blocks": ((5, 6, 6, 16), (5, 5, 16, 120)),
    "2_blocks": ((3, 6, 5, 2), (2, 3, 2, 20)),
    "3_blocks_odd": ((1, 5, 7, 3), (3, 1, 3, 33)),
    "1x1_kernel": ((2, 4, 4, 5), (1, 1, 5, 7)),
}


def _reference(xp, w, b):
  return lax.conv_general_dilated(xp, w, (1, 1), "VALID",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


@pytest.mark.parametrize("name", SHAPES)
def test_kernels_match_xla_convolution_and_vjp(name):
  x_shape, w_shape = SHAPES[name]
  rng = np.random.default_rng(len(name))
  xp = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
  b = jnp.asarray(rng.normal(size=w_shape[-1:]), jnp.float32)
  want, vjp = jax.vjp(_reference, xp, w, b)
  g = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  dx_want, dw_want, db_want = vjp(g)
  scale = lambda a: float(jnp.abs(a).max())
  y = jax.jit(kernels.forward)(xp, w, b)
  dw, db = jax.jit(kernels.weight_grad, static_argnums=2)(xp, g, w.shape)
  dx = jax.jit(kernels.input_grad, static_argnums=2)(g, w, xp.shape)
  for got, ref in ((y, want), (dw, dw_want), (db, db_want), (dx, dx_want)):
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * scale(ref) + 1e-6)


def test_vmapped_call_runs_once_per_member():
  rng = np.random.default_rng(0)
  xp = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 6)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 6, 16)), jnp.float32)
  b = jnp.zeros((16,), jnp.float32)
  got = jax.vmap(kernels.forward, in_axes=(0, 0, None))(xp, w, b)
  np.testing.assert_allclose(got, jax.vmap(_reference, in_axes=(0, 0, None))(xp, w, b),
                             rtol=1e-5, atol=1e-4)


def test_kernels_are_used_exactly_on_cpus_they_are_tiled_for(monkeypatch):
  with open("/proc/cpuinfo") as f:
    flags = set(f.read().split())
  want = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else 0
  assert kernels.vector_floats() == want
  monkeypatch.setenv("JATLAS_CONV_CPU", "1")
  assert kernels.available() == (want > 0)
  monkeypatch.setenv("JATLAS_CONV_CPU", "force")
  assert kernels.available()
  monkeypatch.setenv("JATLAS_CONV_CPU", "0")
  assert not kernels.available()


def test_member_loop_calls_the_kernels(monkeypatch):
  """A LeNet-5 conv2 vmapped over members (the member loop: 3 members, one loop) runs
  forward, kernel gradient and input gradient as the compiled kernels."""
  monkeypatch.setenv("JATLAS_CONV_CPU", "force")  # also on CPUs they are not tiled for
  x, w, b = (jnp.ones(s, jnp.float32) for s in ((3, 4, 14, 14, 6), (3, 5, 5, 6, 16), (3, 16)))

  def member(x, w, b):
    return jax.grad(lambda *a: jnp.sum(jnp.tanh(conv.conv2d(*a, lowering="im2col"))),
                    (0, 1, 2))(x, w, b)

  hlo = jax.jit(jax.vmap(member)).lower(x, w, b).compile().as_text()
  for target in kernels.TARGETS:
    assert f'custom_call_target="{target}"' in hlo, target


def test_build_is_cached_per_source():
  first = kernels.build()
  mtime = os.path.getmtime(first)
  assert kernels.build() == first and os.path.getmtime(first) == mtime


def test_without_a_compiler_conv_falls_back_to_xla(tmp_path):
  code = """
import warnings
import jax.numpy as jnp, numpy as np
from jatlas.nets import conv
from jatlas.nets.cpu import kernels
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  assert not kernels.available()
assert any("not built" in str(w.message) for w in caught), caught
x = jnp.ones((2, 8, 8, 1)); w = jnp.ones((5, 5, 1, 3)) * 0.1
y = conv.conv2d(x, w, padding=2)
np.testing.assert_allclose(y, conv.conv2d(x, w, padding=2, lowering="xla"), rtol=1e-6)
print("fallback ok")
"""
  env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "JATLAS_CACHE": str(tmp_path)}
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert out.returncode == 0 and "fallback ok" in out.stdout, out.stderr
