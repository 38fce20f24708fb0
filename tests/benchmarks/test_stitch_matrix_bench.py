"""benchmarks/stitch_matrix.py --smoke: three cases, one JSON line per comparison."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "stitch_matrix.py"


def test_stitch_matrix_smoke_prints_the_three_comparisons():
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2"}
  out = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  assert [r["name"] for r in rows] == ["population_vs_sequential",
                                       "population_vs_torch_sequential",
                                       "sequential_vs_torch_sequential"]
  for r in rows:
    assert r["unit"] == "matrices/hour" and r["pairs"] == 4 and r["epochs"] == 1
    assert r["jatlas"] > 0 and r["baseline"] > 0
    assert r["ratio"] == pytest.approx(r["jatlas"] / r["baseline"], rel=0.05, abs=0.01)
  # the population trains each pair exactly as train_stitches does alone
  assert rows[0]["max_abs_acc_diff"] <= 1 / 360
  assert 0 <= rows[1]["mean_acc"]["torch"] <= 1
