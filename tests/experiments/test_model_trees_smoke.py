"""The model-trees recipe on its smoke config: base zoo, fine-tuned children, experts, routing."""
import json
import os

import pandas as pd



def test_smoke_run_writes_results(tmp_path, run_smoke):
  out = str(tmp_path / "run")
  proc = run_smoke("model_trees", out, devices=1)
  r = json.load(open(os.path.join(out, "results.json")))
  # 3 MLP bases x 20 class subsets, each tree split 12 / 4 / 4
  assert r["models"] == 60 and (r["n_train"], r["n_val"], r["n_test"]) == (36, 12, 12)
  assert r["zoos"]["mlp"]["bases"] == 3 and r["zoos"]["mlp"]["children_diverged"] == 0
  assert r["zoos"]["mlp"]["children_test_acc_mean"] > 0.5  # 5-way after 2 epochs
  assert len(r["trees"]) == 3 and r["clusters_found"] == 3 and r["cluster_accuracy"] == 1.0
  assert r["routing_accuracy"] == 1.0  # bases of different seeds are far apart
  p = r["probex"]
  for setting in ("in_tree", "cross_tree", "mixed", "experts"):
    assert 0.0 <= p[setting] <= 1.0
    assert set(p["metrics"][setting]) == {"elementwise_accuracy", "exact_match", "mAP"}
  assert all(len(p["per_tree"][s]) == 3 for s in ("in_tree", "mixed", "experts"))
  assert p["experts"] == p["in_tree"]  # perfect routing: the same experts read the same models
  zs = r["zeroshot"]
  assert zs["n_unseen_subsets"] == 4 and zs["chance"] == 0.25 and zs["mixed"] is None
  assert zs["n_test_models"] == 12 and 0.0 <= zs["experts"] <= 1.0
  table = pd.read_csv(os.path.join(out, "results.csv"))
  assert list(table.setting) == ["in_tree", "cross_tree", "mixed", "experts"]
  for f in ("results.png", "zoos/mlp_base/members.parquet", "zoos/mlp_children/members.parquet"):
    assert os.path.getsize(os.path.join(out, f)) > 0, f
  assert "routing accuracy 100.0%" in proc.stdout
  # a second run reuses both finished zoos instead of training again
  again = run_smoke("model_trees", out, devices=1)
  assert "zoo 60 members" not in again.stderr \
      and "zoo 3 members" not in again.stderr
  assert json.load(open(os.path.join(out, "results.json")))["probex"] == p
