"""Model trees on digits (the Model-J recipe of ProbeX, CVPR 2025): base models fine-tuned
into children on random 5-of-10 class subsets; predict each child's subset (10-dim
multi-hot) from one layer's weights, within each tree, with all trees mixed, and with
tree experts and nearest-centroid routing; plus ProbeX's zero-shot head on subsets
never seen in training.

  python experiments/model_trees.py --config configs/model_trees.py[:smoke] --out DIR

Writes DIR/zoos/<family>_{base,children} (the zoos; a rerun reuses finished ones),
DIR/results.json, DIR/results.csv (one row per method and setting), DIR/results.png and
DIR/jax_cache (compiled programs, reused by a rerun).
"""
import os
import sys
import time

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jatlas import experiment
from jatlas.files import write_json
from jatlas.weights import make_encoder
from jatlas.weights.inputs import layer_matrix
from jatlas.weights.metrics import task_metrics
from jatlas.weights.trees import TreeExperts, cluster_trees, matched_accuracy
from jatlas.zoo.reuse import open_or_train

SETTINGS = ("in_tree", "cross_tree", "mixed", "experts")


def train_zoos(cfg, out: str) -> dict:
  """{family: (base zoo, children zoo)}; each family's children fine-tune its base zoo."""
  zoos = {}
  for fam in cfg.families:
    f = cfg.families[fam]
    base_dir = os.path.abspath(os.path.join(out, "zoos", f"{fam}_base"))
    base = open_or_train(f.base, base_dir)
    f.children.zoo.parent = base_dir
    zoos[fam] = base, open_or_train(f.children, os.path.join(out, "zoos", f"{fam}_children"))
  return zoos


def subset_of(task: str) -> tuple:
  """'subset:0-2-5-7-9' -> (0, 2, 5, 7, 9)."""
  if not task.startswith("subset:"):
    raise ValueError(f"child task {task!r}: expected 'subset:<c>-<c>-...' (class_subsets)")
  return tuple(int(c) for c in task.split(":", 1)[1].split("-"))


def tree_models(cfg, zoos: dict) -> dict:
  """Every healthy final child: x_RHW (its family's layer as a matrix), y_RK (subset
  multi-hot), tree_R (one id per base model), subset_R (index into cfg.subsets)."""
  index = {tuple(s): i for i, s in enumerate(cfg.subsets)}
  parts, names = [], []
  for fam, (_, children) in zoos.items():
    t = children.table
    rows = np.flatnonzero((t.final & (t.status == "ok")).to_numpy())
    layer = cfg.families[fam].layer
    x_RHW = layer_matrix(children.stacked(layer, rows), layer)
    subsets = [subset_of(s) for s in t.task.to_numpy()[rows]]
    y_RK = np.zeros((len(rows), 10), np.float32)
    for r, s in enumerate(subsets):
      y_RK[r, list(s)] = 1
    parent_R = np.asarray([f"{fam}/{p}" for p in t.parent_id.to_numpy()[rows]])
    parts.append((x_RHW, y_RK, parent_R, np.asarray([index[s] for s in subsets])))
    names.append(f"{fam} {layer} -> X {x_RHW.shape[1:]}")
  shapes = {x.shape[1:] for x, *_ in parts}
  if len(shapes) != 1:
    raise ValueError(f"families read layers of different shapes ({names}); mixing trees needs "
                     "one shape: pick layers that read as the same X [d_H, d_W]")
  parent_R = np.concatenate([p[2] for p in parts])
  tree_names, tree_R = np.unique(parent_R, return_inverse=True)
  return {"x": np.concatenate([p[0] for p in parts]), "y": np.concatenate([p[1] for p in parts]),
          "tree": tree_R, "tree_names": tree_names.tolist(),
          "subset": np.concatenate([p[3] for p in parts]), "layers": names}


def split_per_tree(tree_R, val_fraction: float, test_fraction: float, seed: int) -> dict:
  """{"train", "val", "test"}: model indices, each tree split in the same proportions."""
  rng = np.random.default_rng(seed)
  out = {"train": [], "val": [], "test": []}
  for t in np.unique(tree_R):
    idx = rng.permutation(np.flatnonzero(tree_R == t))
    n_test, n_val = round(test_fraction * len(idx)), round(val_fraction * len(idx))
    out["test"].append(idx[:n_test])
    out["val"].append(idx[n_test:n_test + n_val])
    out["train"].append(idx[n_test + n_val:])
  return {k: np.sort(np.concatenate(v)) for k, v in out.items()}


def encoder_kw(cfg, method: str) -> dict:
  kw = dict(cfg.experiment.encoder)
  return {**kw, **dict(cfg.experiment.probex)} if method.startswith("probex") else kw


def fit_per_tree(method: str, kw: dict, d: dict, split: dict) -> dict:
  """{tree: encoder fitted on that tree's training models (its val models pick the epoch)}."""
  tr, va, tree = split["train"], split["val"], d["tree"]
  out = {}
  for t in np.unique(tree):
    a, b = tr[tree[tr] == t], va[tree[va] == t]
    out[t] = make_encoder(method, **kw).fit(d["x"][a], d["y"][a], task="multilabel",
                                           val=(d["x"][b], d["y"][b]))
  return out


def compare(method: str, kw: dict, d: dict, split: dict) -> tuple[dict, list]:
  """One method in every setting -> (results entry, table rows). Each setting's test
  outputs are pooled over all test models before scoring; cross_tree pools every
  in-tree expert's outputs on the other trees' test models (transfer across trees)."""
  tr, va, te = (split[k] for k in ("train", "val", "test"))
  x, y, tree = d["x"], d["y"], d["tree"]
  per_tree = fit_per_tree(method, kw, d, split)
  in_tree = np.zeros(y[te].shape, np.float32)
  cross_y, cross_out = [], []
  for t, enc in per_tree.items():
    in_tree[tree[te] == t] = enc.decision_function(x[te[tree[te] == t]])
    other = te[tree[te] != t]
    cross_y.append(y[other])
    cross_out.append(enc.decision_function(x[other]))
  mixed = make_encoder(method, **kw).fit(x[tr], y[tr], task="multilabel", val=(x[va], y[va]))
  experts = TreeExperts(method, **kw).fit(x[tr], y[tr], task="multilabel", val=(x[va], y[va]))
  out = {"in_tree": in_tree, "mixed": mixed.decision_function(x[te]),
         "experts": experts.decision_function(x[te])}
  m = {s: task_metrics("multilabel", y[te], o) for s, o in out.items()}
  m["cross_tree"] = task_metrics("multilabel", np.concatenate(cross_y), np.concatenate(cross_out))
  entry = {s: m[s]["elementwise_accuracy"] for s in SETTINGS}
  entry.update({
      "metrics": m,
      "per_tree": {s: [task_metrics("multilabel", y[te][tree[te] == t], o[tree[te] == t])[
          "elementwise_accuracy"] for t in per_tree] for s, o in out.items()},
      "experts_trees": experts.n_trees_,
      "routing_accuracy": experts.routing_accuracy(x[te], tree[te])})
  rows = [{"method": method, "setting": s, **m[s]} for s in SETTINGS]
  return entry, rows


def class_embeddings(y_SK, dim: int, seed: int) -> np.ndarray:
  """E_SD: each subset as the sum of its classes' fixed random vectors, a stand-in for
  text embeddings of class names (a bag of class-name embeddings)."""
  g_KD = np.random.default_rng(seed).normal(size=(y_SK.shape[1], dim)) / np.sqrt(dim)
  return (y_SK @ g_KD).astype(np.float32)


def subset_splits(subset_R, z, seed: int) -> tuple:
  """(train, val, test) subset ids: test subsets are never seen in training."""
  order = np.random.default_rng(seed).permutation(np.unique(subset_R))
  n_test = max(2, round(z.unseen_fraction * len(order)))
  n_val = max(1, round(z.val_fraction * len(order)))
  return order[n_test + n_val:], order[n_test:n_test + n_val], np.sort(order[:n_test])


def zero_shot(cfg, d: dict) -> dict:
  """probex_zeroshot experts (routed) and one mixed encoder: trained on the models of
  some subsets, scored on models of subsets never in training, among those unseen subsets.
  The val subsets sit among the training classes as candidates without training models:
  the epoch is picked by how well the head scores classes it was not fitted to."""
  z, seed = cfg.experiment.zeroshot, cfg.experiment.seed
  train_s, val_s, test_s = subset_splits(d["subset"], z, seed + 1)
  y_SK = np.zeros((len(cfg.subsets), 10), np.float32)
  for i, s in enumerate(cfg.subsets):
    y_SK[i, list(s)] = 1
  e_SD = class_embeddings(y_SK, z.emb_dim, seed)
  fit_s = np.concatenate([train_s, val_s])
  pos = {s: i for i, s in enumerate(fit_s)}
  a, b, c = (np.flatnonzero(np.isin(d["subset"], s)) for s in (train_s, val_s, test_s))
  ya, yb = (np.asarray([pos[s] for s in d["subset"][i]]) for i in (a, b))
  yc = np.searchsorted(test_s, d["subset"][c])
  kw = {**dict(cfg.experiment.encoder), **dict(cfg.experiment.probex), "rep_dim": z.rep_dim}
  x, e_test = d["x"], e_SD[test_s]
  fit = dict(task="multiclass", val=(x[b], yb), class_embeddings=e_SD[fit_s])
  experts = TreeExperts("probex_zeroshot", **kw).fit(x[a], ya, **fit)
  hits_RK = y_SK[test_s[experts.predict(x[c], class_embeddings=e_test)]] == d["y"][c]
  mixed = None
  if z.mixed:
    mixed = make_encoder("probex_zeroshot", **kw).fit(x[a], ya, **fit).score(
        x[c], yc, class_embeddings=e_test)
  return {"experts": experts.score(x[c], yc, class_embeddings=e_test), "mixed": mixed,
          "experts_elementwise_accuracy": float(hits_RK.mean()),
          "chance": 1 / len(test_s), "n_unseen_subsets": int(len(test_s)),
          "n_train_subsets": int(len(train_s)), "n_test_models": int(len(c)),
          "routing_accuracy": experts.routing_accuracy(x[c], d["tree"][c])}


def plot_results(table: pd.DataFrame, routing: float, path: str) -> None:
  """Element-wise accuracy per method, grouped by setting."""
  methods = list(dict.fromkeys(table.method))
  fig = Figure(figsize=(7, 4))
  ax = fig.subplots()
  width = 0.8 / len(SETTINGS)
  for j, s in enumerate(SETTINGS):
    v = [table[(table.method == m) & (table.setting == s)].elementwise_accuracy.iloc[0]
         for m in methods]
    ax.bar(np.arange(len(methods)) + (j - (len(SETTINGS) - 1) / 2) * width, v, width, label=s)
  ax.axhline(0.5, color="gray", lw=0.8, ls=":", label="chance")
  ax.set_xticks(range(len(methods)), methods)
  ax.set(ylabel="element-wise accuracy (10 labels)", ylim=(0.4, 1.0),
         title=f"class subset from one layer; routing accuracy {routing:.1%}")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def zoo_summary(zoos: dict) -> dict:
  out = {}
  for fam, (base, children) in zoos.items():
    bt, ct = base.table[base.table.final], children.table[children.table.final]
    out[fam] = {"model": base.manifest["model"]["name"], "bases": int(len(bt)),
                "base_test_acc": bt.test_acc.round(4).tolist(), "children": int(len(ct)),
                "children_diverged": int((ct.status != "ok").sum()),
                "children_test_acc_mean": float(ct.test_acc.mean()),
                "train_seconds": [base.manifest.get("train_seconds"),
                                  children.manifest.get("train_seconds")]}
  return out


def main(argv):
  out, cfg = experiment.start(argv, __doc__)
  t0 = time.time()
  zoos = train_zoos(cfg, out)
  zoo_s = time.time() - t0
  d = tree_models(cfg, zoos)
  e = cfg.experiment
  split = split_per_tree(d["tree"], e.val_fraction, e.test_fraction, e.seed)
  clusters = cluster_trees(d["x"][split["train"]])
  results = {"zoos": zoo_summary(zoos), "layers": d["layers"], "trees": d["tree_names"],
             "models": int(len(d["tree"])), **{f"n_{k}": int(len(v)) for k, v in split.items()},
             "clusters_found": int(clusters.max() + 1),
             "cluster_accuracy": matched_accuracy(clusters, d["tree"][split["train"]])}
  rows = []
  for method in e.methods:
    results[method], r = compare(method, encoder_kw(cfg, method), d, split)
    rows += r
  results["routing_accuracy"] = results[e.methods[0]]["routing_accuracy"]
  results["zeroshot"] = zero_shot(cfg, d)
  results.update({"zoo_seconds": round(zoo_s, 1), "wall_seconds": round(time.time() - t0, 1)})
  table = pd.DataFrame(rows)
  write_json(os.path.join(out, "results.json"), results)
  table.to_csv(os.path.join(out, "results.csv"), index=False)
  plot_results(table, results["routing_accuracy"], os.path.join(out, "results.png"))
  print(table.to_string(index=False, float_format="%.3f"))
  zs = results["zeroshot"]
  mixed = "" if zs["mixed"] is None else f", mixed {zs['mixed']:.3f}"
  print(f"{results['models']} children of {len(d['tree_names'])} trees; clustering found "
        f"{results['clusters_found']} trees ({results['cluster_accuracy']:.1%} of training "
        f"models matched); routing accuracy {results['routing_accuracy']:.1%}; zero-shot on "
        f"{zs['n_unseen_subsets']} unseen subsets: experts {zs['experts']:.3f}{mixed} "
        f"(chance {zs['chance']:.3f}); {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
  main(sys.argv[1:])
