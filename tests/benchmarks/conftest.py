"""Runs a benchmark script in a fresh process and returns its JSON lines."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_rows():
  """bench_rows("cka_speed.py", "--smoke", devices=1) -> [dict, ...] (rc 0 asserted)."""
  def run(script: str, *args: str, devices: int = 1, timeout: int = 600) -> list:
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices)}  # not the suite's 8 fake ones
    out = subprocess.run([sys.executable, str(BENCH / script), *args], env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  return run
