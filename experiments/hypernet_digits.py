"""Hypernetwork-dataset recipe on digits: train a one-vs-rest LeNet-5 zoo, then
identify from its weights alone which digit each model detects (10-way, as the
72.0% experiment of Kurtenbach & Shamir 2025).

  python experiments/hypernet_digits.py --config configs/hypernet_digits.py[:smoke] --out DIR

Writes DIR/zoo (the zoo), DIR/results.json, DIR/task_id.csv, DIR/accuracy.png,
DIR/task_id_confusion.png. Rerunning resumes an interrupted zoo or reuses a finished one.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

from jatlas.config import load_config
from jatlas.weights import member_split, statnn_features, task_identification
from jatlas.weights.plot import plot_confusion
from jatlas.zoo import Zoo, train_zoo
from jatlas.files import write_json
from jatlas.zoo.plot import plot_zoo_accuracy
from jatlas.zoo.sharding import one_cpu_device_per_core
from jatlas.zoo.store import TABLE


def identify_tasks(zoo: Zoo, cfg) -> tuple[pd.DataFrame, dict]:
  """Task-ID accuracy from StatNN features and from raw weights (final checkpoints)."""
  t = zoo.table
  rows = np.flatnonzero(t.final & (t.status == "ok"))
  task_R = t.task_index.to_numpy()[rows]
  train, test = member_split(task_R, cfg.experiment.test_fraction, cfg.experiment.seed)
  params = [n for n in zoo.names if n.startswith("params/")]
  features = {"statnn": statnn_features({n: zoo.stacked(n, rows) for n in params})[0],
              "raw_weights": zoo.flat(rows)}
  results = {k: task_identification(X, task_R, train, test) for k, X in features.items()}
  table = pd.DataFrame([{"features": k, **{m: v for m, v in r.items() if m != "confusion"}}
                        for k, r in results.items()])
  return table, results


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  args, rest = parser.parse_known_args(argv)
  one_cpu_device_per_core()
  cfg = load_config(rest)
  zoo_dir = os.path.join(args.out, "zoo")
  t0 = time.time()
  done = os.path.isfile(os.path.join(zoo_dir, TABLE))
  zoo = Zoo.open(zoo_dir) if done else train_zoo(cfg, zoo_dir)
  train_s = time.time() - t0
  task_table, task_results = identify_tasks(zoo, cfg)
  t = zoo.table
  final = t[t.final & (t.status == "ok")]
  results = {
      "members": int(zoo.manifest["members"]), "checkpoints": len(t),
      "diverged": int((t[t.final].status != "ok").sum()),
      "test_acc_mean": float(final.test_acc.mean()),
      "test_bacc_mean": float(final.test_bacc.mean()),
      "test_bacc_per_task": final.groupby("task").test_bacc.mean().round(4).to_dict(),
      "task_id_acc_statnn": task_results["statnn"]["accuracy"],
      "task_id_acc_raw_weights": task_results["raw_weights"]["accuracy"],
      "task_id_chance": task_results["statnn"]["chance"],
      "task_id_n_test": task_results["statnn"]["n_test"],
      "zoo_train_seconds": zoo.manifest.get("train_seconds"), "wall_seconds": round(train_s, 1),
  }
  write_json(os.path.join(args.out, "results.json"), results)
  task_table.to_csv(os.path.join(args.out, "task_id.csv"), index=False)
  plot_zoo_accuracy(t, os.path.join(args.out, "accuracy.png"))
  labels = sorted(final.task.unique(), key=lambda s: final[final.task == s].task_index.iloc[0])
  plot_confusion(task_results["statnn"]["confusion"], labels,
                 os.path.join(args.out, "task_id_confusion.png"),
                 f"task ID from StatNN features: {results['task_id_acc_statnn']:.1%}")
  print(json.dumps(results, indent=1))
  print(f"{results['members']} LeNet-5 detectors, mean test balanced accuracy "
        f"{results['test_bacc_mean']:.3f}; task identified from weights: "
        f"{results['task_id_acc_statnn']:.1%} (StatNN), {results['task_id_acc_raw_weights']:.1%} "
        f"(raw), chance {results['task_id_chance']:.1%}")


if __name__ == "__main__":
  main(sys.argv[1:])
