"""Compatible specialization on digits (Pari et al. 2024): as two specialists fine-tuned
from one base drift apart, how similar are their layers (CKA: biased, debiased,
calibrated) and how well do they still merge on a task that needs both?

  python experiments/specialization.py --config configs/specialization.py[:smoke] --out DIR

Writes DIR/zoos/{base,specialists} (a rerun reuses finished zoos), DIR/results.json,
DIR/results.csv (one row per saved specialization epoch), DIR/cka.csv (one row per
epoch and tap), DIR/alpha.csv (the feature-averaging curves), DIR/results.png.
"""
import functools
import os
import time

import jax
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jatlas import experiment
from jatlas.files import write_json
from jatlas.merge import average, ties
from jatlas.merge.batchnorm import recompute_batch_stats
from jatlas.merge.feature_mix import classification_scores, feature_average_sweep
from jatlas.merge.routing import train_router
from jatlas.similarity import calibrated, linear_cka
from jatlas.similarity.matrix import tap_features
from jatlas.zoo import recipe
from jatlas.zoo.reuse import open_or_train


def train_zoos(cfg, out: str):
  base_dir = os.path.abspath(os.path.join(out, "zoos", "base"))
  base = open_or_train(cfg.base, base_dir)
  spec_cfg = cfg.specialists.copy_and_resolve_references()
  spec_cfg.zoo.parent = base_dir
  return base, open_or_train(spec_cfg, os.path.join(out, "zoos", "specialists"))


def scores(net, variables, x, y) -> dict:
  acc, loss = classification_scores(net.apply(variables, x), y)
  return {"acc": acc, "loss": loss}


def with_params(variables, params, net, x_train):
  """variables with merged `params`, BatchNorm statistics recomputed on x_train."""
  return recompute_batch_stats(net, {**variables, "params": params}, x_train)


def weight_merges(net, base_v, va, vb, data, e) -> dict:
  x, y, x_train = data["x_test"], data["y_test"], data["x_train"]
  soup = average([va["params"], vb["params"]])
  merged = ties(base_v["params"], [va["params"], vb["params"]], e.ties.density, e.ties.lam)
  return {"average_stale_bn": scores(net, {**va, "params": soup}, x, y),
          "average": scores(net, with_params(va, soup, net, x_train), x, y),
          "ties": scores(net, with_params(va, merged, net, x_train), x, y)}


CKA = {"biased": linear_cka, "debiased": functools.partial(linear_cka, debiased=True)}


def layer_cka(net, va, vb, x, e, key) -> list:
  fa = tap_features(net, va, x, reduce=e.cka.reduce)
  fb = tap_features(net, vb, x, reduce=e.cka.reduce)
  rows = []
  for tap in fa:
    row = {"tap": tap}
    for name, metric in CKA.items():
      c = calibrated(metric, fa[tap], fb[tap], key, draws=e.cka.draws)
      row.update({f"{name}": c["score"], f"{name}_null_mean": c["null_mean"],
                  f"{name}_p": c["p_value"], f"{name}_ci_low": c["ci_low"],
                  f"{name}_ci_high": c["ci_high"]})
    rows.append({k: (float(v) if k != "tap" else v) for k, v in row.items()})
  return rows


def routing(net, va, vb, data, e) -> dict:
  out = {}
  for depth in e.routing.depths:
    res = train_router(net, [va, vb], data["x_train"], data["y_train"], depths=depth,
                       x_test=data["x_test"], y_test=data["y_test"], seeds=e.routing.seeds,
                       lr=e.routing.lr, epochs=e.routing.epochs)
    out[f"routing_d{depth}"] = {"acc": float(np.mean(res["test_acc_M"])),
                                "acc_seeds": np.asarray(res["test_acc_M"]).round(4).tolist()}
  return out


def specialization_point(net, base_v, va, vb, data, e, key) -> tuple[dict, list, pd.DataFrame]:
  """Merge results, per-tap CKA rows and the alpha curve of one pair of specialists."""
  x, y = data["x_test"], data["y_test"]
  own = [scores(net, v, x[data["half_test"] == k], y[data["half_test"] == k])["acc"]
         for k, v in enumerate((va, vb))]
  res = {"specialist_0": scores(net, va, x, y), "specialist_1": scores(net, vb, x, y),
         "own_half_acc": own, **weight_merges(net, base_v, va, vb, data, e)}
  curve = feature_average_sweep(net, [va, vb], x, y, np.linspace(0, 1, e.alphas))
  best = curve.loc[curve.accuracy.idxmax()]
  res["feature_average"] = {"acc": float(best.accuracy), "alpha": float(best.alpha),
                            "loss": float(curve.loss.min())}
  res.update(routing(net, va, vb, data, e))
  return res, layer_cka(net, va, vb, x, e, key), curve


def target_data(cfg, halves) -> dict:
  ds = recipe.build_dataset(cfg.base)
  (x_train, y_train), (x_test, y_test) = ds.split("train"), ds.split("test")
  half = lambda y: np.where(np.isin(y, halves[1]), 1, 0)
  return {"x_train": x_train, "y_train": y_train.astype(np.int32), "x_test": x_test,
          "y_test": y_test.astype(np.int32), "half_test": half(y_test)}


def run(cfg, base, specialists) -> tuple[list, list, list]:
  e = cfg.experiment
  data = target_data(cfg, cfg.specialists.tasks.kwargs["subsets"])
  net = specialists.model()
  t = base.table
  base_v = base.variables(int(np.flatnonzero(t.final)[0]))
  st = specialists.table
  rows, cka_rows, curves = [], [], []
  for epoch in sorted(set(st.epoch)):
    at = lambda m: int(np.flatnonzero((st.member == m) & (st.epoch == epoch))[0])
    va, vb = specialists.variables(at(0)), specialists.variables(at(1))
    res, ck, curve = specialization_point(net, base_v, va, vb, data, e,
                                          jax.random.key(e.seed + epoch))
    rows.append({"epoch": int(epoch), **res})
    cka_rows += [{"epoch": int(epoch), **r} for r in ck]
    curves.append(curve.assign(epoch=int(epoch)))
    print(f"epoch {epoch}: " + ", ".join(f"{k} {v['acc']:.3f}" for k, v in res.items()
                                         if isinstance(v, dict)), flush=True)
  return rows, cka_rows, curves


METHODS = ("specialist_0", "specialist_1", "average", "ties", "feature_average",
           "routing_d1", "routing_d2", "routing_d3")


def merge_table(rows: list) -> pd.DataFrame:
  return pd.DataFrame([{"epoch": r["epoch"], **{m: r[m]["acc"] for m in METHODS if m in r}}
                       for r in rows])


def plot_results(table: pd.DataFrame, cka: pd.DataFrame, curves: pd.DataFrame, path: str):
  fig = Figure(figsize=(15, 4.2))
  ax1, ax2, ax3 = fig.subplots(1, 3)
  x = np.maximum(table.epoch, 0.5)  # epoch 0 (the base) drawn at 0.5 on a log axis
  for m in [c for c in table.columns if c != "epoch"]:
    ax1.plot(x, table[m], marker="o", label=m)
  ax1.set(xscale="log", xlabel="specialization epochs (0 drawn at 0.5)",
          ylabel="test accuracy, all 10 digits", title="merge quality")
  ax1.legend(fontsize=7)
  mid = cka[cka.tap != "logits"].tap.unique()
  for tap in mid:
    c = cka[cka.tap == tap]
    ax2.plot(np.maximum(c.epoch, 0.5), c.debiased, marker="o", label=tap)
  ax2.set(xscale="log", xlabel="specialization epochs", ylabel="debiased linear CKA",
          title="specialist 0 vs 1, per tap")
  ax2.legend(fontsize=7)
  for epoch, c in curves.groupby("epoch"):
    ax3.plot(c.alpha, c.accuracy, marker=".", label=f"epoch {epoch}")
  ax3.set(xlabel="alpha (weight on the 0-4 specialist)", ylabel="test accuracy",
          title="feature averaging")
  ax3.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv):
  out, cfg = experiment.start(argv, __doc__)
  t0 = time.time()
  base, specialists = train_zoos(cfg, out)
  zoo_s = time.time() - t0
  rows, cka_rows, curves = run(cfg, base, specialists)
  table, cka, curves = merge_table(rows), pd.DataFrame(cka_rows), pd.concat(curves)
  base_acc = float(base.table[base.table.final].test_acc.iloc[0])
  results = {"base_test_acc": base_acc, "points": rows, "cka": cka_rows,
             "zoo_seconds": round(zoo_s, 1), "wall_seconds": round(time.time() - t0, 1)}
  write_json(os.path.join(out, "results.json"), results)
  table.to_csv(os.path.join(out, "results.csv"), index=False)
  cka.to_csv(os.path.join(out, "cka.csv"), index=False)
  curves.to_csv(os.path.join(out, "alpha.csv"), index=False)
  plot_results(table, cka, curves, os.path.join(out, "results.png"))
  print(table.to_string(index=False, float_format="%.3f"))
  print(cka.pivot(index="epoch", columns="tap", values="debiased").to_string(
      float_format="%.3f"))
  print(f"base {base_acc:.3f}; {results['wall_seconds']:.0f} s (zoos {zoo_s:.0f} s)")


if __name__ == "__main__":
  import sys
  main(sys.argv[1:])
