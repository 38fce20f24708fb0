"""The specialization experiment on its smoke config: a base, two specialists fine-tuned
from it on disjoint halves of the digits, and at each saved epoch the merges and the
calibrated per-tap CKA between the specialists."""
import json
import os

import pandas as pd
import pytest



def test_smoke_run_writes_results(tmp_path, run_smoke):
  out = str(tmp_path / "run")
  proc = run_smoke("specialization", out, devices=2)
  r = json.load(open(os.path.join(out, "results.json")))
  start, end = r["points"]
  assert (start["epoch"], end["epoch"]) == (0, 4)
  # at epoch 0 both specialists are the base: the same accuracy, CKA 1 at every tap
  assert start["specialist_0"]["acc"] == pytest.approx(r["base_test_acc"], abs=1e-6)
  assert start["specialist_1"]["acc"] == pytest.approx(r["base_test_acc"], abs=1e-6)
  cka = pd.read_csv(os.path.join(out, "cka.csv"))
  assert set(cka.tap) >= {"stem", "block1", "block2", "logits"}
  first = cka[cka.epoch == 0]
  assert first.biased.min() > 0.999 and first.debiased.min() > 0.999
  assert (first.debiased_p < 0.1).all()  # far above the shuffled-rows null
  # after fine-tuning each specialist is good on its own half and forgets the other
  assert min(end["own_half_acc"]) > 0.7
  assert max(end["specialist_0"]["acc"], end["specialist_1"]["acc"]) < 0.6
  last = cka[cka.epoch == 4].set_index("tap")
  assert last.loc["logits", "debiased"] < 0.95  # their outputs have drifted apart
  assert (last.debiased_ci_low <= last.debiased + 1e-6).all()
  assert (last.debiased <= last.debiased_ci_high + 1e-6).all()
  # every merge is scored; a merge that needs both halves beats each specialist alone
  for m in ("average", "average_stale_bn", "ties", "feature_average", "routing_d1",
            "routing_d2"):
    assert 0 <= end[m]["acc"] <= 1, m
  best_alone = max(end["specialist_0"]["acc"], end["specialist_1"]["acc"])
  assert max(end[m]["acc"] for m in ("average", "feature_average", "routing_d1")) > best_alone
  table = pd.read_csv(os.path.join(out, "results.csv"))
  assert list(table.epoch) == [0, 4] and "routing_d2" in table
  curves = pd.read_csv(os.path.join(out, "alpha.csv"))
  assert len(curves) == 2 * 11 and curves.accuracy.between(0, 1).all()
  assert os.path.getsize(os.path.join(out, "results.png")) > 10_000
