"""Model stitching on digits (Hernandez et al. 2023): stitching matrices between small
ResNets of several architectures and seeds, with the sanity controls (random-init
sender, shuffled-label sender, stitches fitted to the receiver's representation).

  python experiments/stitching.py --config configs/stitching.py[:smoke] --out DIR

Writes DIR/zoos/<arch> (the zoos; a rerun reuses finished ones), DIR/results.json (per
matrix: rows, columns, accuracies, the receiver's own accuracy and the triangle
summary), DIR/results.csv (one row per stitch and seed), DIR/heatmaps/*.png and
DIR/jax_cache (compiled programs, reused by a rerun).
"""
import os
import sys
import time

import numpy as np
import pandas as pd

from jatlas import experiment, stitch
from jatlas.data import load
from jatlas.files import write_json
from jatlas.zoo.reuse import open_or_train


def zoo_models(cfg, out: str) -> tuple[dict, dict, dict, dict]:
  """({"<arch>/s<i>": (net, variables)}, {"<arch>/shuffled": ...}, {"<arch>/s<i>":
  variables at epoch 0}, zoo summary)."""
  models, shuffled, untrained, summary = {}, {}, {}, {}
  for arch in cfg.archs:
    zoo = open_or_train(cfg.zoos[arch], os.path.join(out, "zoos", arch))
    net, table = zoo.model(), zoo.table.sort_values(["member", "epoch"])
    t = table[table.final]
    noise = [f"+noise{r:g}" for r in cfg.zoos[arch].tasks.label_noise if r > 0]
    noisy = [r for r, task in zip(t.index, t.task) if task.endswith(tuple(noise or ["-"]))]
    clean = [r for r in t.index if r not in noisy]
    for i, row in enumerate(clean[:cfg.seeds]):
      models[f"{arch}/s{i}"] = (net, zoo.variables(row))
      start = table[(table.member == t.member[row]) & (table.epoch == 0)].index
      untrained[f"{arch}/s{i}"] = zoo.variables(start[0]) if len(start) else None
    if noisy:
      shuffled[f"{arch}/shuffled"] = (net, zoo.variables(noisy[0]))
    summary[arch] = {"test_acc": t.loc[clean, "test_acc"].round(4).tolist(),
                     "shuffled_train_acc": t.loc[noisy, "train_acc"].round(4).tolist(),
                     "shuffled_test_acc": t.loc[noisy, "test_acc"].round(4).tolist(),
                     "train_seconds": zoo.manifest.get("train_seconds")}
  return models, shuffled, untrained, summary


def taps(net, which: str) -> list:
  """stem + blocks ("all"), stem + the middle and last block ("few"), stem + last ("ends")."""
  maps = [t for t in net.tap_names() if t == "stem" or t.startswith("block")]
  picks = {"all": maps, "few": [maps[0], maps[len(maps) // 2], maps[-1]],
           "ends": [maps[0], maps[-1]]}
  return list(dict.fromkeys(picks[which]))


def model_pairs(cfg) -> list:
  """Each architecture into itself across seeds, and one cross pair per architecture."""
  a = list(cfg.archs)
  self_pairs = [(f"{x}/s0", f"{x}/s1") for x in a]
  return self_pairs + [(f"{x}/s0", f"{a[(i + 1) % len(a)]}/s1") for i, x in enumerate(a)]


def describe(key, acc, table, own) -> dict:
  sender, receiver, target, kernel = key
  part = table[(table.sender == sender) & (table.receiver == receiver)
               & (table.target == target) & (table.kernel == kernel)]
  return {"sender": sender, "receiver": receiver, "target": target, "kernel": kernel,
          "rows": list(acc.index), "cols": list(acc.columns),
          "accuracy": np.round(acc.to_numpy(float), 4).tolist(), "receiver_acc": own,
          **{k: round(v, 4) for k, v in stitch.triangle_summary(acc).items()},
          "mean_gap": round(float(part.gap.mean()), 4),
          "mean_rel_mse": round(float(part.rel_mse.mean()), 4)}


def file_name(key) -> str:
  sender, receiver, target, kernel = key
  name = f"{sender}__{receiver}__{target}_k{kernel}"
  return name.replace("/", "-").replace(":", "-") + ".png"


def controls_summary(matrices: dict, pair, kernel: int = 1) -> dict:
  """The control pair's matrix beside its controls' (same receiver, 1x1 stitches)."""
  s, r = pair
  rows = {"trained": (s, r, "task"), "random_sender": (s + stitch.controls.RANDOM, r, "task"),
          "mse_target": (s, r, "mse")}
  rows.update({"shuffled_sender": (m["sender"], r, "task") for m in matrices.values()
               if m["sender"].endswith("/shuffled") and m["receiver"] == r})
  keys = ("last_sender_mean", "first_sender_to_last_receiver", "backward_mean",
          "forward_mean", "mean_rel_mse")
  out = {}
  for name, (a, b, target) in rows.items():
    m = matrices[f"{a}->{b}:{target}:k{kernel}"]
    out[name] = {k: m[k] for k in keys}
  return out


def main(argv):
  out, cfg = experiment.start(argv, __doc__)
  t0 = time.time()
  models, shuffled, untrained, zoos = zoo_models(cfg, out)
  zoo_s = time.time() - t0
  ds = load("digits")
  control = (f"{cfg.control_arch}/s0", f"{cfg.control_arch}/s1")
  models, controls = stitch.with_controls(models, control, ds.x_train, shuffled=shuffled,
                                          random=untrained[control[0]])
  st = cfg.stitch
  res = stitch.stitch_matrices(
      models, model_pairs(cfg) + controls, ds.x_train, ds.y_train, ds.x_test, ds.y_test,
      send_taps={n: taps(net, st.send_taps) for n, (net, _) in models.items()},
      recv_taps={n: taps(net, st.recv_taps) for n, (net, _) in models.items()},
      kernels=tuple(st.kernels), seeds=tuple(st.seeds), lr=st.lr, optimizer=st.optimizer,
      weight_decay=st.weight_decay, epochs=st.epochs, batch_size=st.batch_size)
  os.makedirs(os.path.join(out, "heatmaps"), exist_ok=True)
  matrices = {}
  for key, acc in res["accuracy"].items():
    s, r, target, k = key
    matrices[f"{s}->{r}:{target}:k{k}"] = describe(key, acc, res["table"],
                                                   res["receiver_acc"][r])
    stitch.plot_stitch_matrix(acc, os.path.join(out, "heatmaps", file_name(key)),
                              title=f"{s} -> {r} ({target}, {k}x{k})")
  results = {"zoos": zoos, "matrices": matrices, "controls": controls_summary(matrices, control),
             "skipped": len(res["skipped"]), "stitches": int(len(res["table"])),
             "zoo_seconds": round(zoo_s, 1), "wall_seconds": round(time.time() - t0, 1)}
  write_json(os.path.join(out, "results.json"), results)
  res["table"].to_csv(os.path.join(out, "results.csv"), index=False)
  cols = ["receiver_acc", "last_sender_mean", "first_sender_to_last_receiver",
          "backward_mean", "forward_mean", "mean_rel_mse"]
  summary = pd.DataFrame([{"matrix": name, **{c: m[c] for c in cols}}
                          for name, m in matrices.items()])
  print(summary.to_string(index=False, float_format="%.3f"))
  print(f"{results['stitches']} stitches in {len(matrices)} matrices; "
        f"{results['wall_seconds']:.0f} s (zoos {zoo_s:.0f} s)")


if __name__ == "__main__":
  main(sys.argv[1:])
