"""benchmarks/stitch_matrix.py --smoke: three cases, one JSON line per comparison."""
import pytest


def test_stitch_matrix_smoke_prints_the_three_comparisons(bench_rows):
  rows = bench_rows("stitch_matrix.py", "--smoke", devices=2)
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
