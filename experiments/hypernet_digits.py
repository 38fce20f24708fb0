"""Hypernetwork-dataset recipe on digits: train a one-vs-rest LeNet-5 zoo, then read
from the weights alone which digit each model detects (10-way, as the 72.0%
experiment of Kurtenbach & Shamir 2025) with every encoder of jatlas.weights,
predict each checkpoint's accuracy, and generate detectors with a hypernetwork.

  python experiments/hypernet_digits.py --config configs/hypernet_digits.py[:smoke] --out DIR

Writes DIR/zoo, DIR/results.json, DIR/task_id.csv, DIR/learning_curve.csv,
DIR/accuracy_prediction.csv, DIR/accuracy.png, DIR/learning_curve.png,
DIR/templates.png, DIR/probex_layer_sweep.csv, DIR/jax_cache (compiled programs).
Rerunning reuses a finished zoo and every finished stage (DIR/stages.json: each encoder
fit, learning-curve point, accuracy prediction, the hypernetwork), so an interrupted
`:paper` run resumes where it stopped.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

from jatlas import nets, weights
from jatlas.compile_cache import use_compile_cache
from jatlas.config import load_config
from jatlas.files import sha256, write_json
from jatlas.stages import Stages
from jatlas.weights.layer_sweep import layer_sweep
from jatlas.weights.linearised import detector_template, plot_templates
from jatlas.weights.plot import plot_learning_curve
from jatlas.weights.hypernet_eval import hypernet_on_zoo
from jatlas.zoo import Zoo, recipe, train_zoo
from jatlas.zoo.plot import plot_zoo_accuracy
from jatlas.zoo.sharding import one_cpu_device_per_core
from jatlas.zoo.store import MANIFEST, TABLE


def model_splits(task_R, cfg) -> dict:
  """Stratified test / val / train-pool model indices (rows of task_R)."""
  e = cfg.experiment
  pool, test = weights.member_split(task_R, e.test_fraction, e.seed)
  train, val = _val_split(task_R, pool, e.val_per_task, e.seed)
  return {"train": train, "val": val, "test": np.sort(test)}


def _val_split(task_R, pool, per_task: int, seed: int):
  rng = np.random.default_rng(seed)
  val = np.concatenate([rng.permutation(pool[task_R[pool] == t])[:per_task]
                        for t in np.unique(task_R)])
  return np.setdiff1d(pool, val), np.sort(val)


def per_task_subset(task_R, pool, k: int, seed: int):
  """The first k models of each task in a seeded order of the pool."""
  rng = np.random.default_rng(seed)
  return np.sort(np.concatenate([rng.permutation(pool[task_R[pool] == t])[:k]
                                 for t in np.unique(task_R)]))


def encoder_kwargs(name: str, cfg, zoo: Zoo, spec) -> dict:
  """Config kwargs of encoder `name` plus what it needs from the zoo."""
  kw = dict(cfg.experiment.encoders[name])
  base = kw.get("base", name)
  if name.startswith("canonical") or base == "equivariant" or name == "equivariant":
    kw["spec"] = spec
  if name == "input_probing":
    kw.update(net_name=zoo.manifest["model"]["name"], net_kwargs=zoo.manifest["model"]["kwargs"],
              input_shape=tuple(zoo.manifest["input_shape"]))
  return kw


def fit_score(name, kw, tensors, task_R, s, train) -> float:
  take = lambda idx: {k: v[idx] for k, v in tensors.items()}
  enc_name = name.split(":")[0]
  enc = weights.make_encoder(enc_name, **kw).fit(
      take(train), task_R[train], val=(take(s["val"]), task_R[s["val"]]))
  return float(enc.score(take(s["test"]), task_R[s["test"]]))


def timed(fn):
  """fn's result and its wall time, as a stage result."""
  t0 = time.time()
  return {"result": fn(), "seconds": round(time.time() - t0, 1)}


def probex_sweep(tensors, task_R, s, kw, out) -> dict:
  """ProbeX's layer sweep (the table to out/probex_layer_sweep.csv); the best layer's score."""
  take = lambda idx: {k: v[idx] for k, v in tensors.items()}
  sweep = layer_sweep(take(s["train"]), task_R[s["train"]],
                      val=(take(s["val"]), task_R[s["val"]]), **kw)
  sweep.table.to_csv(os.path.join(out, "probex_layer_sweep.csv"), index=False)
  return {"accuracy": float(sweep.best.score(take(s["test"]), task_R[s["test"]])),
          "best_layer": sweep.best_layer}


def linearised_accuracy(template_RF, task_R, s, train) -> float:
  res = weights.task_identification(template_RF, task_R, train, s["test"])
  return res["accuracy"]


def identify_tasks(zoo: Zoo, cfg, out: str, stages: Stages) -> dict:
  """Task ID from weights: every encoder, the references, the learning curve."""
  t = zoo.table
  rows = np.flatnonzero(t.final & (t.status == "ok"))
  task_R = t.task_index.to_numpy()[rows]
  s = model_splits(task_R, cfg)
  params = sorted(n for n in zoo.names if n.startswith("params/"))
  tensors = {n: zoo.stacked(n, rows) for n in params}
  net = zoo.model()
  spec = nets.permutation_spec(net, zoo.variables(int(rows[0])))
  results, timing = {}, {}
  e = cfg.experiment
  for name in e.task_id_encoders:
    if name == "probex":
      done = stages.run("task_id/probex", lambda: timed(lambda: probex_sweep(
          tensors, task_R, s, dict(e.encoders.probex), out)))
      results[name] = done["result"]["accuracy"]
      results["probex_best_layer"] = done["result"]["best_layer"]
    else:
      done = stages.run(f"task_id/{name}", lambda: timed(lambda: fit_score(
          name, encoder_kwargs(name, cfg, zoo, spec), tensors, task_R, s, s["train"])))
      results[name] = done["result"]
    timing[name] = done["seconds"]
    print(f"task ID {name}: {results[name]:.1%} ({timing[name]} s)", flush=True)
  template_R = detector_template(net, zoo.stacked_variables(rows), tuple(zoo.manifest[
      "input_shape"]))
  template_RF = template_R.reshape(len(rows), -1)
  linearised = linearised_accuracy(template_RF, task_R, s, s["train"])
  plot_templates(template_R[s["train"]], task_R[s["train"]], zoo_task_names(zoo),
                 os.path.join(out, "templates.png"), "linearised templates (mean per task)")
  probing_kw = encoder_kwargs("input_probing", cfg, zoo, spec)
  done = stages.run("task_id/input_probing", lambda: timed(lambda: fit_score(
      "input_probing", probing_kw, tensors_all(zoo, rows, tensors), task_R, s, s["train"])))
  probing, timing["input_probing"] = done["result"], done["seconds"]
  print(f"task ID linearised reference: {linearised:.1%}; input probing: {probing:.1%} "
        f"({timing['input_probing']} s)", flush=True)
  curve = learning_curve(zoo, cfg, tensors, template_RF, task_R, s, spec, results, stages)
  learned = {k: v for k, v in results.items() if k in e.task_id_encoders}
  return {"task_id": learned, "task_id_probex_best_layer": results.get("probex_best_layer"),
          "task_id_linearised": linearised, "task_id_input_probing": probing,
          "task_id_seconds": timing, "learning_curve": curve,
          "task_id_split": {k: len(v) for k, v in s.items()}}


def tensors_all(zoo, rows, params: dict) -> dict:
  """Every stored tensor of `rows` (input probing runs the nets), reusing `params`."""
  return {**params, **{n: zoo.stacked(n, rows) for n in zoo.names if n not in params}}


def zoo_task_names(zoo):
  t = zoo.table.drop_duplicates("task_index").sort_values("task_index")
  return [name.split(":")[-1] for name in t.task]


def learning_curve(zoo, cfg, tensors, template_RF, task_R, s, spec, fitted, stages) -> list:
  """Task-ID accuracy vs models per task (same val and test models throughout); a
  size that takes the whole train pool reuses the task-ID table's fit (`fitted`)."""
  e, rows = cfg.experiment, []
  for k in e.curve_sizes:
    train = per_task_subset(task_R, s["train"], k, e.seed)
    row = {"models_per_task": int(k), "n_train": int(len(train)),
           "linearised": linearised_accuracy(template_RF, task_R, s, train)}
    whole_pool = np.array_equal(train, s["train"])
    for name in e.curve_encoders:
      row[name] = fitted[name] if whole_pool and name in fitted else stages.run(
          f"learning_curve/{k}/{name}", lambda: fit_score(
              name, encoder_kwargs(name, cfg, zoo, spec), tensors, task_R, s, train))
    print("learning curve", {k: (round(v, 3) if isinstance(v, float) else v)
                             for k, v in row.items()}, flush=True)
    rows.append(row)
  return rows


def predict_accuracy(zoo: Zoo, cfg, stages: Stages) -> dict:
  """Each checkpoint's test balanced accuracy from its weights (all saved epochs),
  models split by member so no member is on both sides."""
  t = zoo.table
  ok = np.flatnonzero((t.status == "ok").to_numpy())
  member_R = t.member.to_numpy()[ok]
  members = np.unique(member_R)
  test_m = np.random.default_rng(cfg.experiment.seed).permutation(members)[
      :int(len(members) * cfg.experiment.test_fraction)]
  is_test = np.isin(member_R, test_m)
  params = [n for n in zoo.names if n.startswith("params/")]
  # read per side, when a fit needs them: `:paper`'s 40,000 checkpoints are 14.6 GB
  read = lambda idx: {n: zoo.stacked(n, ok[idx]) for n in params}
  y_R = t.test_bacc.to_numpy()[ok].astype(np.float32)
  train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
  out = {}

  def fit_evaluate(name):
    enc = weights.make_encoder(name, **dict(cfg.experiment.encoders[name]))
    enc.fit(read(train), y_R[train], task="regression")
    m = enc.evaluate(read(test), y_R[test])
    return {"kendall_tau": float(m["kendall_tau"]), "r2": float(m["r2"])}

  for name in cfg.experiment.accuracy_encoders:
    out[name] = m = stages.run(f"accuracy_prediction/{name}", lambda: fit_evaluate(name))
    print(f"accuracy prediction {name}: tau {m['kendall_tau']:.3f}, R2 {m['r2']:.3f}", flush=True)
  out["n_train"], out["n_test"] = int(len(train)), int(len(test))
  out["epochs"] = sorted(int(x) for x in t.epoch.unique())
  return out


def hypernet_results(zoo: Zoo, cfg) -> dict:
  """Detectors generated by a hypernetwork distilled from the zoo, next to the zoo's
  trained members and random inits (test balanced accuracy per task)."""
  ds = recipe.build_dataset(cfg)
  tasks = recipe.build_tasks(cfg, ds)
  _, h = hypernet_on_zoo(zoo, ds, tasks, progress=False, **cfg.hypernet.to_dict())
  tr = h["train_T"]
  names = [n.split(":")[-1] for n in tasks.names]
  table = pd.DataFrame({"task": names, "generated": h["generated_T"], "zoo_members": h["zoo_T"],
                        "random_init": h["random_T"], "held_out": ~tr})
  print("hypernetwork detectors (test balanced accuracy):\n" + table.round(3).to_string(index=False),
        flush=True)
  return {"hypernet": {
      "cond": cfg.hypernet.cond, "held_out": [names[i] for i in np.flatnonzero(~tr)],
      "per_task": table.round(4).to_dict(orient="records"),
      "generated_mean_trained_tasks": float(h["generated_T"][tr].mean()),
      "zoo_mean_trained_tasks": float(h["zoo_T"][tr].mean()),
      "generated_held_out": float(h["generated_T"][~tr].mean()) if (~tr).any() else None,
      "random_init_mean": float(h["random_T"].mean()),
      "seconds": {k: round(float(v), 1) for k, v in h["seconds"].items()}}}


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  args, rest = parser.parse_known_args(argv)
  one_cpu_device_per_core()
  cfg = load_config(rest)
  use_compile_cache(os.path.join(args.out, "jax_cache"))
  zoo_dir = os.path.join(args.out, "zoo")
  t0 = time.time()
  done = os.path.isfile(os.path.join(zoo_dir, TABLE))
  zoo = Zoo.open(zoo_dir) if done else train_zoo(cfg, zoo_dir)
  train_s = time.time() - t0
  t = zoo.table
  final = t[t.final & (t.status == "ok")]
  results = {
      "members": int(zoo.manifest["members"]), "checkpoints": len(t),
      "diverged": int((t[t.final].status != "ok").sum()),
      "test_acc_mean": float(final.test_acc.mean()),
      "test_bacc_mean": float(final.test_bacc.mean()),
      "test_bacc_per_task": final.groupby("task").test_bacc.mean().round(4).to_dict(),
      "task_id_chance": 0.1,
      "zoo_train_seconds": zoo.manifest.get("train_seconds"), "zoo_wall_seconds": round(train_s, 1),
  }
  stages = Stages(args.out, cfg, inputs={"zoo.json": sha256(os.path.join(zoo_dir, MANIFEST))})
  results.update(identify_tasks(zoo, cfg, args.out, stages))
  results["accuracy_prediction"] = predict_accuracy(zoo, cfg, stages)
  results.update(stages.run("hypernet", lambda: hypernet_results(zoo, cfg)))
  results["wall_seconds"] = round(time.time() - t0, 1)
  write_json(os.path.join(args.out, "results.json"), results)
  write_tables(results, args.out)
  plot_zoo_accuracy(t, os.path.join(args.out, "accuracy.png"))
  print(json.dumps(results, indent=1))
  best = max(results["task_id"], key=results["task_id"].get)
  print(f"{results['members']} LeNet-5 detectors, mean test balanced accuracy "
        f"{results['test_bacc_mean']:.3f}; task identified from weights: "
        f"{results['task_id'][best]:.1%} ({best}, best learned encoder), "
        f"{results['task_id_linearised']:.1%} (linearised reference), "
        f"{results['task_id_input_probing']:.1%} (input probing), chance 10.0%; hypernetwork "
        f"detectors {results['hypernet']['generated_mean_trained_tasks']:.3f} balanced accuracy "
        f"(zoo {results['hypernet']['zoo_mean_trained_tasks']:.3f}, random init "
        f"{results['hypernet']['random_init_mean']:.3f})")


def write_tables(results: dict, out: str) -> None:
  pd.DataFrame([{"encoder": k, "accuracy": v} for k, v in results["task_id"].items()] + [
      {"encoder": "linearised (reference)", "accuracy": results["task_id_linearised"]},
      {"encoder": "input probing (reads the function)",
       "accuracy": results["task_id_input_probing"]}]).to_csv(
          os.path.join(out, "task_id.csv"), index=False)
  curve = pd.DataFrame(results["learning_curve"])
  curve.to_csv(os.path.join(out, "learning_curve.csv"), index=False)
  plot_learning_curve(curve, os.path.join(out, "learning_curve.png"))
  acc = results["accuracy_prediction"]
  pd.DataFrame([{"encoder": k, **v} for k, v in acc.items() if isinstance(v, dict)]).to_csv(
      os.path.join(out, "accuracy_prediction.csv"), index=False)


if __name__ == "__main__":
  main(sys.argv[1:])
