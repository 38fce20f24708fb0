"""The README main job, on its smoke config: zoo + task identification end to end."""
import json
import os

EXPECTED_ENCODERS = ("statnn", "dense", "mlp_flat", "probex", "canonical", "equivariant")


def test_smoke_run_writes_results(tmp_path, run_smoke):
  out = str(tmp_path / "run")
  proc = run_smoke("hypernet_digits", out, devices=1)
  results = json.load(open(os.path.join(out, "results.json")))
  assert results["members"] == 30 and results["checkpoints"] == 60
  assert results["diverged"] == 0
  assert results["task_id_chance"] == 0.1 and results["task_id_split"]["test"] == 10
  assert set(results["task_id"]) == set(EXPECTED_ENCODERS)
  assert all(0.0 <= v <= 1.0 for v in results["task_id"].values())
  # references reported apart from the learned encoders, never inside "task_id"
  assert 0.0 <= results["task_id_linearised"] <= 1.0
  assert 0.0 <= results["task_id_input_probing"] <= 1.0
  assert [r["models_per_task"] for r in results["learning_curve"]] == [1]
  assert set(results["accuracy_prediction"]["statnn"]) == {"kendall_tau", "r2"}
  assert results["accuracy_prediction"]["epochs"] == [0, 1]
  h = results["hypernet"]
  assert h["held_out"] == ["7"] and len(h["per_task"]) == 10
  assert 0.0 <= h["generated_mean_trained_tasks"] <= 1.0 and 0.0 <= h["random_init_mean"] <= 1.0
  assert results["test_acc_mean"] > 0.85  # after one epoch, mostly the 90% negatives
  assert set(results["test_bacc_per_task"]) == {f"one_vs_rest:{k}" for k in range(10)}
  for f in ("accuracy.png", "templates.png", "learning_curve.png", "task_id.csv",
            "learning_curve.csv", "accuracy_prediction.csv", "zoo/members.parquet"):
    assert os.path.getsize(os.path.join(out, f)) > 0, f
  assert "task identified from weights" in proc.stdout
  # a second run reuses the finished zoo and every finished stage: same results, no fits
  first = json.load(open(os.path.join(out, "results.json")))
  again = run_smoke("hypernet_digits", out)
  assert "zoo 30 members" not in again.stderr
  assert "stage task_id/equivariant: finished in an earlier run" in again.stdout
  assert "stage hypernet: finished in an earlier run" in again.stdout
  second = json.load(open(os.path.join(out, "results.json")))
  moving = ("wall_seconds", "zoo_wall_seconds")
  assert {k: v for k, v in second.items() if k not in moving} == \
      {k: v for k, v in first.items() if k not in moving}
  # another config is refused, naming the field, not mixed with the recorded stages
  refused = run_smoke("hypernet_digits", out, ok=False,
                      extra=["--config.experiment.task_id_encoders=('statnn',)"])
  assert "stages.json holds stages of another run" in refused.stderr
  assert "experiment.task_id_encoders" in refused.stderr
