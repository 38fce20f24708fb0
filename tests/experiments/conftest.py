"""Runs an experiment script on its smoke config in a fresh process, as a user would."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def run_smoke():
  """run_smoke("stitching", out, devices=2, extra=[...]) -> CompletedProcess (rc 0 asserted
  unless ok=False)."""
  def run(name: str, out: str, *, devices: int = 1, extra=(), timeout: int = 900, ok=True):
    cmd = [sys.executable, os.path.join(ROOT, "experiments", f"{name}.py"),
           f"--config={os.path.join(ROOT, 'configs', f'{name}.py')}:smoke", "--out", out,
           *extra]
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc
  return run
