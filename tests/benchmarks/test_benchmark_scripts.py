"""The benchmark scripts run on tiny sizes and print what benchmarks/README.md promises."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
KEYS = {"name", "jatlas", "baseline", "ratio", "unit"}


def run(script: str, *args: str) -> str:
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2"}  # not the suite's 8 fake devices
  out = subprocess.run([sys.executable, str(BENCH / script), *args], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def json_lines(stdout: str) -> list:
  rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
  assert rows, stdout
  for row in rows:
    assert KEYS <= set(row), row
    assert row["jatlas"] > 0 and row["baseline"] > 0, row
    # jatlas and baseline are rounded to 0.1: a slow (loaded) baseline moves their quotient
    assert row["ratio"] == pytest.approx(row["jatlas"] / row["baseline"], rel=0.05, abs=0.01), row
  return rows


def test_zoo_throughput_quick():
  rows = json_lines(run("zoo_throughput.py", "--quick", "--cases", "lenet5_64,mlp_1024",
                        "--reps", "1"))
  assert [r["name"] for r in rows] == ["lenet5_64", "mlp_1024"]
  for r in rows:
    assert r["unit"] == "member-steps/s" and r["devices"] == 2
    assert 0 < r["peak_fraction"] < 1 and r["gflops"] > 0


def test_read_layer_quick():
  rows = json_lines(run("read_layer.py", "--quick"))
  assert {r["unit"] for r in rows} == {"files/s"}


def test_profile_member_step_accounts_for_the_traced_time():
  out = run("profile_member_step.py", "--steps", "2", "--top", "3")
  traced = float(next(l for l in out.splitlines() if l.startswith("traced:")).split()[1])
  layers = out.split("layer\n")[1].strip().splitlines()
  by_layer = {line.split(None, 1)[1]: float(line.split()[0]) for line in layers}
  assert {"conv1 backward", "conv2 forward", "optimizer, batch, loss"} <= set(by_layer)
  assert sum(by_layer.values()) == pytest.approx(traced, abs=0.01)


def test_wall_shares_split_overlapping_thunks():
  sys.path.insert(0, str(BENCH))
  from profile_member_step import wall_shares
  events = [{"name": "a", "ts": 0, "dur": 10}, {"name": "b", "ts": 5, "dur": 10}]
  share = wall_shares(events)  # 0-5 a alone, 5-10 both, 10-15 b alone
  assert share == {"a": 7.5, "b": 7.5}
  assert sum(share.values()) == 15


def test_probex_train_quick():
  rows = json_lines(run("probex_train.py", "--quick"))
  assert [r["name"] for r in rows] == ["probex_epoch", "layer_sweep", "layer_sweep_first_epoch"]
  assert all(r["jatlas"] > 0 and r["baseline"] > 0 and r["ratio"] > 0 for r in rows)


def test_conv_kernels_harness_builds_and_matches_a_direct_loop(tmp_path):
  """benchmarks/conv_kernels.cc (the per-kernel figures) compiles as its header says and
  its forward passes agree with the direct loop on all three LeNet-5 shapes."""
  import re
  import shutil
  import jax
  cxx = os.environ.get("CXX", "g++")
  if shutil.which(cxx) is None:
    pytest.skip("no C++ compiler")
  exe = tmp_path / "conv_kernels"
  subprocess.run([cxx, "-O3", "-march=native", "-std=c++17", f"-I{jax.ffi.include_dir()}",
                  str(BENCH / "conv_kernels.cc"), "-o", str(exe)], check=True,
                 capture_output=True, text=True, timeout=300)
  out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300).stdout
  rows = re.findall(r"^(conv\d)  forward ([\d.]+) ms .*max err ([\d.e+-]+)\)", out, re.M)
  assert [r[0] for r in rows] == ["conv1", "conv2", "conv3"], out
  for name, ms, err in rows:
    assert float(ms) > 0 and float(err) < 1e-3, (name, ms, err)
