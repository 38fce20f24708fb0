"""Building the CPU kernels (jatlas.nets.cpu.kernels) without a real compiler: the
cache key holds the CPU's identity, the identity survives a missing /proc/cpuinfo,
`conv.prepare()` compiles before any trace, and `jatlas.nets.conv` loads the CPU
lowerings only when one is requested. A fake compiler (a Python script) writes a
placeholder library and logs each compilation."""
import os
import platform
import shlex
import subprocess
import sys

import pytest

from jatlas.nets.cpu import kernels

FAKE_CXX = """
import pathlib, sys
args = sys.argv[1:]
if "-E" in args:  # the -march=native query
  sys.stderr.write("cc1plus -E -march=fake-cpu -mavx9\\n")
  sys.exit(0)
pathlib.Path(args[args.index("-o") + 1]).write_text("not a library")
with open(sys.argv[0] + ".log", "a") as log:
  log.write("compiled\\n")
"""

CPUINFO = """processor\t: 0
vendor_id\t: FakeVendor
cpu family\t: 25
model\t\t: 1
model name\t: Fake CPU A
cpu MHz\t\t: 2445.406
microcode\t: 0x1000065
flags\t\t: fpu sse2 avx2

processor\t: 1
vendor_id\t: FakeVendor
model name\t: Fake CPU B
flags\t\t: fpu
"""


@pytest.fixture
def fake_cxx(tmp_path):
  """(compiler command, its log of compilations)."""
  script = tmp_path / "fake_cxx.py"
  script.write_text(FAKE_CXX)
  return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", tmp_path / "fake_cxx.py.log"


@pytest.fixture
def fresh_identity():
  kernels.cpu_identity.cache_clear()
  yield
  kernels.cpu_identity.cache_clear()  # later tests see the real machine again


def test_each_cpu_gets_its_own_cache_file(tmp_path, monkeypatch, fake_cxx):
  cxx, log = fake_cxx
  cache = tmp_path / "cache"
  monkeypatch.setenv("JATLAS_CACHE", str(cache))
  built = {}
  for cpu in ("cpu-a", "cpu-b", "cpu-a"):
    monkeypatch.setattr(kernels, "cpu_identity", lambda cxx, cpu=cpu: cpu)
    built.setdefault(cpu, set()).add(kernels.build(cxx))
  assert len(built["cpu-a"]) == len(built["cpu-b"]) == 1
  assert built["cpu-a"] != built["cpu-b"]
  assert sorted(cache.iterdir()) == sorted(built["cpu-a"] | built["cpu-b"])
  assert log.read_text().count("compiled") == 2  # the second cpu-a build was a cache hit


def test_identity_is_the_first_processor_without_clock_or_microcode(
    tmp_path, monkeypatch, fresh_identity):
  info = tmp_path / "cpuinfo"
  info.write_text(CPUINFO)
  monkeypatch.setattr(kernels, "CPUINFO", info)
  got = kernels.cpu_identity("g++").splitlines()
  assert got == ["vendor_id\t: FakeVendor", "cpu family\t: 25", "model\t\t: 1",
                 "model name\t: Fake CPU A", "flags\t\t: fpu sse2 avx2"]
  kernels.cpu_identity.cache_clear()
  info.write_text(CPUINFO.replace("2445.406", "3000.000").replace("0x1000065", "0x2"))
  assert kernels.cpu_identity("g++").splitlines() == got
  kernels.cpu_identity.cache_clear()
  info.write_text(CPUINFO.replace("avx2", "avx2 avx512f", 1))
  assert kernels.cpu_identity("g++").splitlines() != got


def test_identity_without_proc_cpuinfo(tmp_path, monkeypatch, fake_cxx, fresh_identity):
  monkeypatch.setattr(kernels, "CPUINFO", tmp_path / "no-cpuinfo")
  cxx, _ = fake_cxx
  assert "-march=fake-cpu -mavx9" in kernels.cpu_identity(cxx)  # the compiler's resolution
  missing = str(tmp_path / "no-such-compiler")
  assert kernels.cpu_identity(missing) == f"{platform.machine()} {platform.processor()}"
  assert kernels.library_path(cxx) != kernels.library_path(missing)


def _run(code, **env):
  out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                       capture_output=True, text=True)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr
  return out


def test_prepare_compiles_before_tracing(tmp_path, fake_cxx):
  cxx, log = fake_cxx
  code = f"""
import pathlib, warnings
import jax, jax.numpy as jnp
from jatlas.nets import conv
log = pathlib.Path({str(log)!r})
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  conv.prepare()
assert log.read_text().count("compiled") == 1
assert any("not built" in str(w.message) for w in caught), caught  # a placeholder library
x = jnp.ones((2, 8, 8, 1)); w = jnp.ones((5, 5, 1, 3))
jax.jit(lambda x, w: conv.conv2d(x, w, padding=2)).lower(x, w)
assert log.read_text().count("compiled") == 1  # the trace did not compile again
print("ok")
"""
  _run(code, CXX=cxx, JATLAS_CACHE=str(tmp_path / "cache"))


def test_cpu_lowerings_are_loaded_on_first_request(tmp_path, fake_cxx):
  cxx, log = fake_cxx
  code = """
import sys
import jax.numpy as jnp, numpy as np
from jatlas.nets import conv
loaded = lambda: "jatlas.nets.cpu" in sys.modules
x = jnp.ones((2, 8, 8, 1)); w = jnp.ones((5, 5, 1, 3)) * 0.1
y = conv.conv2d(x, w, padding=2, lowering="xla")
conv.prepare("xla")
conv.default_lowering = lambda: "xla"  # as on GPU/TPU
conv.prepare()
conv.conv2d(x, w, padding=2)
assert not loaded() and set(conv._LOWERED) == {"xla"}, sorted(sys.modules)
np.testing.assert_allclose(conv.conv2d(x, w, padding=2, lowering="im2col_ad"), y, rtol=1e-6)
assert loaded() and {"im2col", "im2col_ad"} <= set(conv._LOWERED)
print("ok")
"""
  _run(code, CXX=cxx, JATLAS_CACHE=str(tmp_path / "cache"))
  assert not log.exists()  # nothing asked for the C++ kernels
