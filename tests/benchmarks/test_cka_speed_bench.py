"""benchmarks/cka_speed.py --smoke runs, prints its four cases, and jatlas's layer x layer
CKA agrees with the NumPy loop on every pair; its NumPy estimators match hand-built
references."""
import pathlib
import sys

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
FIELDS = {"name", "jatlas", "baseline", "ratio", "unit", "pairs", "n", "jatlas_s",
          "jatlas_first_s", "baseline_s", "held_jit_s", "held_jit_ratio", "gflops",
          "held_jit_gflops", "baseline_gflops", "max_abs_diff"}


def test_cka_speed_smoke_agrees_with_numpy(bench_rows):
  rows = bench_rows("cka_speed.py", "--smoke")
  assert [r["name"] for r in rows] == [
      "digits8_flatten_biased", "digits8_flatten_debiased", "digits32_mean_biased",
      "digits32_mean_debiased"], rows
  for r in rows:
    assert FIELDS <= set(r), r
    assert r["unit"] == "pairs/s" and r["pairs"] == 4 * 5 and r["n"] == 48, r
    assert r["jatlas"] > 0 and r["baseline"] > 0 and r["held_jit_gflops"] > 0, r
    assert r["ratio"] == pytest.approx(r["jatlas"] / r["baseline"], rel=0.05, abs=0.01), r
    assert r["held_jit_ratio"] == pytest.approx(r["baseline_s"] / r["held_jit_s"], rel=0.25)  # both times are rounded in the JSON
    assert r["max_abs_diff"] < 1e-4, r


def test_numpy_references_match_explicit_formulas():
  sys.path.insert(0, str(BENCH))
  from cka_speed import numpy_biased_cka, numpy_debiased_cka, pair_flops
  rng = np.random.default_rng(0)
  x = rng.standard_normal((30, 5))
  y = x @ rng.standard_normal((5, 4)) + 0.5 * rng.standard_normal((30, 4))
  n = len(x)
  h = np.eye(n) - 1 / n
  k, l = x @ x.T, y @ y.T
  hsic = lambda a, b: np.trace(a @ h @ b @ h)  # biased HSIC, Gram form
  assert numpy_biased_cka(x, y) == pytest.approx(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)))

  def u_centre(a):  # U-centering (Szekely & Rizzo 2014), loops over entries
    a = a.copy()
    np.fill_diagonal(a, 0)
    out = np.zeros_like(a)
    for i in range(n):
      for j in range(n):
        if i != j:
          out[i, j] = (a[i, j] - a[i].sum() / (n - 2) - a[:, j].sum() / (n - 2)
                       + a.sum() / ((n - 1) * (n - 2)))
    return out
  ku, lu = u_centre(k), u_centre(l)
  want = np.vdot(ku, lu) / np.sqrt(np.vdot(ku, ku) * np.vdot(lu, lu))
  assert numpy_debiased_cka(x, y) == pytest.approx(want, rel=1e-10)
  assert numpy_debiased_cka(x, x) == pytest.approx(1.0)
  assert pair_flops(10, 3, 4, gram=False) == 2 * 10 * (12 + 9 + 16)
  assert pair_flops(10, 3, 4, gram=True) == 2 * 100 * 7 + 6 * 100
