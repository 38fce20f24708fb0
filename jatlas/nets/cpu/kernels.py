"""Direct CPU convolution kernels (conv_cpu.cc) for one member, as XLA FFI calls.

The C++ source is compiled with the machine's C++ compiler ($CXX, else g++) for
the machine itself (-march=native) and cached under $JATLAS_CACHE (default
~/.cache/jatlas), keyed by the source, flags, jaxlib version, compiler and CPU
(`cpu_identity`: a home directory shared by machines with different CPUs must not
load a library built for another one's instruction set). `load()` builds, loads
and registers the kernels once per process; `available()` says whether the im2col
lowering uses them: where the compiler targets AVX-512 or AVX2 with FMA, the two
vector widths their register tiles are sized for (`vector_floats`: 16 or 8; on other
CPUs they run slower than the XLA lowering; JATLAS_CONV_CPU=force uses them anyway,
=0 never). Call `available()` (or `jatlas.nets.conv.prepare()`) before
tracing, else the first trace of a CPU convolution runs the compiler. Without a
compiler `load()` is False (with one warning) and `jatlas.nets.cpu.im2col` keeps
its pure-XLA lowering. Stride 1 only; the caller pads.

Usage:
  if kernels.available():
    y_NHWO = kernels.forward(xp_NHWC, w_HWIO, b_O)       # xp padded, valid conv
    dw_HWIO, db_O = kernels.weight_grad(xp_NHWC, g_NHWO, w_HWIO.shape)
    dxp_NHWC = kernels.input_grad(g_NHWO, w_HWIO, xp_NHWC.shape)
"""
import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shlex
import subprocess
import tempfile
import warnings

import jax
import jax.numpy as jnp
import jaxlib

SOURCE = pathlib.Path(__file__).with_name("conv_cpu.cc")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
MAX_KERNEL = 7  # widest kernel the C++ code takes
TARGETS = {"jatlas_conv_forward": "JatlasConvForward",
           "jatlas_conv_weight_grad": "JatlasConvWeightGrad",
           "jatlas_conv_input_grad": "JatlasConvInputGrad"}
CPUINFO = pathlib.Path("/proc/cpuinfo")
# /proc/cpuinfo fields that fix what -march=native emits (x86, then Arm); clock speed
# and microcode revision are left out, so they do not trigger rebuilds
CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags",
              "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "Features")


def _cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("JATLAS_CACHE", pathlib.Path.home() / ".cache" / "jatlas"))


def _cpuinfo_fields() -> str:
  """CPU_FIELDS of the first processor in /proc/cpuinfo; "" where it cannot be read."""
  try:
    first = CPUINFO.read_text(errors="replace").split("\n\n")[0]
  except OSError:
    return ""
  return "\n".join(line for line in first.splitlines()
                   if line.partition(":")[0].strip() in CPU_FIELDS)


def _native_target(cxx: str) -> str:
  """The compiler's verbose output for -march=native (its resolved -march/-m flags or
  -target-cpu/-target-feature); "" if it does not run."""
  cmd = [*shlex.split(cxx), "-march=native", "-E", "-v", "-x", "c++", os.devnull,
         "-o", os.devnull]
  try:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stderr
  except (OSError, subprocess.SubprocessError):
    return ""


@functools.cache
def cpu_identity(cxx: str) -> str:
  """What -march=native compiles for on this machine: /proc/cpuinfo's identifying
  fields (no subprocess), else what `cxx` resolves -march=native to, else the
  platform's processor name. Computed once per process and compiler."""
  return (_cpuinfo_fields() or _native_target(cxx)
          or f"{platform.machine()} {platform.processor()}")


def library_path(cxx: str) -> pathlib.Path:
  """Where the library built by `cxx` from SOURCE for this CPU is cached."""
  parts = [SOURCE.read_bytes(), " ".join(FLAGS).encode(), jaxlib.__version__.encode(),
           cxx.encode(), cpu_identity(cxx).encode()]
  key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
  return _cache_dir() / f"conv_cpu-{key}.so"


def build(cxx: str | None = None) -> pathlib.Path:
  """Compiles conv_cpu.cc (once per source/flags/jaxlib/compiler/CPU) -> path of the .so."""
  cxx = cxx or os.environ.get("CXX", "g++")
  out = library_path(cxx)
  if out.exists():
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
  os.close(fd)
  cmd = [*shlex.split(cxx), *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
  try:
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    os.replace(tmp, out)  # atomic: concurrent builders race harmlessly
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return out


@functools.cache
def load() -> bool:
  """Builds (first call: the compiler runs, seconds), loads and registers the kernels
  with XLA; True if they can run. Without a compiler: False, with one warning."""
  try:
    lib = ctypes.cdll.LoadLibrary(str(build()))
    symbols = {name: getattr(lib, symbol) for name, symbol in TARGETS.items()}
  except (OSError, AttributeError, subprocess.CalledProcessError) as e:
    detail = getattr(e, "stderr", "") or e
    warnings.warn(f"jatlas: CPU convolution kernels not built ({detail}); "
                  "using the slower XLA im2col lowering", RuntimeWarning, stacklevel=2)
    return False
  for name, fn in symbols.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(fn), platform="cpu")
  return True


@functools.cache
def vector_floats() -> int:
  """Floats per vector register the built kernels' tiles are sized for: 16 (AVX-512),
  8 (AVX2 with FMA), 0 (neither, or not built)."""
  return int(load() and ctypes.cdll.LoadLibrary(str(build())).JatlasConvVectorFloats())


def available() -> bool:
  """Whether the im2col lowering calls the kernels: built, and tiled for this CPU's
  vectors (elsewhere XLA's lowering is faster). JATLAS_CONV_CPU=0 never uses them,
  =force always (if built)."""
  mode = os.environ.get("JATLAS_CONV_CPU", "1")
  if mode == "0":
    return False
  return load() and (mode == "force" or vector_floats() > 0)


def _f32(shape):
  return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)


def _call(name, out):
  # vmapped (not through jatlas.nets.cpu.member_loop), the kernel runs once per member
  return jax.ffi.ffi_call(name, out, vmap_method="sequential")


def forward(xp_NHWC, w_HWIO, b_O):
  """Valid stride-1 convolution plus bias: (N, Hp-KH+1, Wp-KW+1, O)."""
  n, hp, wp, _ = xp_NHWC.shape
  kh, kw, _, o = w_HWIO.shape
  return _call("jatlas_conv_forward", _f32((n, hp - kh + 1, wp - kw + 1, o)))(
      xp_NHWC, w_HWIO, b_O)


def weight_grad(xp_NHWC, g_NHWO, w_shape):
  """(dw_HWIO, db_O) for the output cotangent g_NHWO."""
  return _call("jatlas_conv_weight_grad", (_f32(w_shape), _f32(w_shape[-1:])))(
      xp_NHWC, g_NHWO)


def input_grad(g_NHWO, w_HWIO, xp_shape):
  """Cotangent of the padded input, (N, Hp, Wp, C)."""
  return _call("jatlas_conv_input_grad", _f32(xp_shape))(g_NHWO, w_HWIO)
