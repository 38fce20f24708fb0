"""benchmarks/atlas_scale.py --smoke runs and prints its case; its plain pipeline and
planted atlases are checked on hand-made cases."""
import pathlib
import sys

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
FIELDS = {"name", "jatlas", "baseline", "ratio", "unit", "nodes", "trees", "jatlas_first_s",
          "jatlas_edge_acc", "baseline_edge_acc"}


def test_atlas_scale_smoke_prints_one_case(bench_rows):
  rows = bench_rows("atlas_scale.py", "--smoke", timeout=300)
  assert [r["name"] for r in rows] == ["recover_200_nodes"], rows
  r = rows[0]
  assert FIELDS <= set(r) and r["unit"] == "s" and r["nodes"] == 200 and r["trees"] == 10
  assert r["jatlas"] > 0 and r["baseline"] > 0
  assert r["ratio"] == pytest.approx(r["baseline"] / r["jatlas"], rel=0.05, abs=0.01)
  assert r["jatlas_edge_acc"] >= 0.9  # the planted trees are easy for the jatlas pipeline
  assert 0 <= r["baseline_edge_acc"] <= 1


def test_planted_atlas_and_plain_pipeline():
  sys.path.insert(0, str(BENCH))
  from atlas_scale import baseline_recover, edge_accuracy, planted
  tensors, ids, parent, trees = planted(40, 10, seed=3)
  assert trees == 4 and len(ids) == 40 and (parent == -1).sum() == 4
  for t in range(4):  # every parent is an earlier model of the same tree
    kids = np.arange(t * 10 + 1, t * 10 + 10)
    assert ((parent[kids] >= t * 10) & (parent[kids] < kids)).all()
  k = "params/fc2/kernel"
  child, p = 5, parent[5]
  resid = tensors[k][child] - 1.02 * tensors[k][p]
  assert np.std(resid) == pytest.approx(0.08 * np.sqrt(np.mean(tensors[k][p] ** 2)), rel=0.2)
  got = baseline_recover(tensors, trees)
  has = got >= 0
  assert (~has).sum() == 4  # one root per Ward cluster, and the clusters are the trees:
  assert (got[has] // 10 == np.flatnonzero(has) // 10).all()
  assert edge_accuracy(parent, got) >= 0.5
  assert edge_accuracy(parent, parent) == 1.0
  assert edge_accuracy(np.array([-1, 0, 0]), np.array([-1, 0, 1])) == 0.5
