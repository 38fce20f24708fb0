"""The stitching experiment on its smoke config: zoos (with shuffled-label members),
matrices for self and cross pairs, the controls, heatmaps; a rerun reuses the zoos."""
import json
import os

import pandas as pd
import pytest



def test_smoke_run_writes_results(tmp_path, run_smoke):
  out = str(tmp_path / "run")
  proc = run_smoke("stitching", out, devices=2)
  r = json.load(open(os.path.join(out, "results.json")))
  z = r["zoos"]
  assert set(z) == {"R1", "R2"} and len(z["R1"]["test_acc"]) == 2
  assert min(z["R1"]["test_acc"] + z["R2"]["test_acc"]) > 0.5  # 3 epochs of a 1-stage net
  # the shuffled-label members learn labels independent of the images: chance on test
  assert len(z["R1"]["shuffled_test_acc"]) == 2 and max(z["R1"]["shuffled_test_acc"]) < 0.25
  assert z["R2"]["shuffled_test_acc"] == []
  pairs = ["R1/s0->R1/s1:task", "R2/s0->R2/s1:task", "R1/s0->R2/s1:task",
           "R2/s0->R1/s1:task", "R1/s0:random->R1/s1:task", "R1/s0->R1/s1:mse",
           "R1/shuffled->R1/s1:task"]
  assert set(r["matrices"]) == {f"{p}:k{k}" for p in pairs for k in (1, 3)}
  m = r["matrices"]["R1/s0->R2/s1:task:k1"]
  assert m["rows"] == ["stem", "block1"] and m["cols"] == ["stem", "block2"]
  assert len(m["accuracy"]) == 2 and all(len(row) == 2 for row in m["accuracy"])
  assert all(0 <= a <= 1 for row in m["accuracy"] for a in row)
  # the receiver's own accuracy, as the zoo measured it (R2/s1: its second clean member)
  assert m["receiver_acc"] == pytest.approx(z["R2"]["test_acc"][1], abs=0.003)
  assert set(r["controls"]) == {"trained", "random_sender", "mse_target", "shuffled_sender"}
  table = pd.read_csv(os.path.join(out, "results.csv"))
  # tap cells (R1: 2 x 2, R2 into R2 or R1: 3 x 2, R1 into R2: 2 x 2) x 2 kernels, one seed
  assert len(table) == r["stitches"] == (4 * 4 + 2 * 6 + 4) * 2
  assert set(table.target) == {"task", "mse"} and table.test_acc.between(0, 1).all()
  heatmaps = os.listdir(os.path.join(out, "heatmaps"))
  assert len(heatmaps) == 14 and all(f.endswith(".png") for f in heatmaps)
  assert "64 stitches in 14 matrices" in proc.stdout
  # a second run reuses both finished zoos instead of training again
  again = run_smoke("stitching", out, devices=2)
  assert "zoo 4 members" not in again.stderr \
      and "zoo 2 members" not in again.stderr
  assert json.load(open(os.path.join(out, "results.json")))["matrices"] == r["matrices"]
