"""The CPU convolution path, fenced off from the general nets code.

XLA:CPU runs a vmapped `lax.conv` (a grouped convolution) several times slower
than matmul formulations, so on CPU a population's convolutions take a different
route: im2col arithmetic with a hand-written VJP (`im2col`), a loop over the
members instead of a vmap (`member_loop`), and compiled C++ kernels for stride-1
float32 convolutions (`kernels`, conv_cpu.cc). None of it is needed on GPU/TPU.

Importing this package registers its lowerings, "im2col" and "im2col_ad", with
`jatlas.nets.conv`. Nobody has to import it by hand: `conv.conv2d` imports it
the first time one of those lowerings is requested ("auto" resolves to "im2col"
on CPU), so a GPU/TPU program never loads it, and `conv` itself never imports
it at module level (this package imports `conv` to register, so that would be
a cycle).

The C++ kernels are built (or loaded from the cache) on first use, which is
inside the first jit trace of a CPU convolution. Entry points and engines call
`prepare()` (or the backend-neutral `jatlas.nets.conv.prepare()`) beforehand,
so the compiler runs at a predictable moment, outside any trace.

Usage:
  from jatlas.nets import conv, cpu
  cpu.prepare()  # optional: builds and loads the kernels now; True if they run
  y_NHWO = conv.conv2d(x_NHWC, w_HWIO, b_O, padding=2, lowering="im2col")
"""
from jatlas.nets import conv
from jatlas.nets.cpu import kernels
from jatlas.nets.cpu.im2col import conv_im2col, conv_im2col_ad

conv.register_lowering("im2col", conv_im2col)
conv.register_lowering("im2col_ad", conv_im2col_ad)


def prepare() -> bool:
  """Builds (or loads from the cache) and registers the C++ kernels now, outside any
  trace; True if they are used, False without a compiler (warns once). Idempotent."""
  return kernels.available()


__all__ = ["conv_im2col", "conv_im2col_ad", "kernels", "prepare"]
