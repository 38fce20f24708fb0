"""`jatlas similarity` and `jatlas merge`: the representation commands of the CLI.

  jatlas similarity ZOO_DIR --rows 0,1 [--metric linear_cka] [--debiased]
                    [--reduce mean] [--examples 512] [--out DIR]
      layer x layer matrix between the checkpoints of two table rows (one row: within
      that model), on the zoo's own test inputs; writes DIR/similarity.csv and a heatmap
  jatlas merge METHOD --base FILE --models FILE FILE ... --out FILE [--lam 1.0]
                    [--density 0.2] [--p 0.9] [--seed 0] [--weights 1,1]
      average | task_arithmetic | ties | dare of flax-layout safetensors files; the
      output carries its recipe (jatlas.merge.read_recipe)
"""
import os

import numpy as np

MERGE_METHODS = ("average", "task_arithmetic", "ties", "dare")


def _similarity(args, rest):
  from functools import partial

  import pandas as pd

  from jatlas import data, similarity
  from jatlas.similarity.plot import plot_matrix
  from jatlas.zoo.store import Zoo
  if rest:
    raise SystemExit(f"unexpected arguments {rest}")
  zoo = Zoo.open(args.zoo_dir)
  rows = [int(r) for r in args.rows.split(",")]
  if not 1 <= len(rows) <= 2 or any(not 0 <= r < len(zoo.table) for r in rows):
    raise SystemExit(f"--rows {args.rows}: one or two table rows in [0, {len(zoo.table)})")
  if args.metric not in similarity.METRICS:
    raise SystemExit(f"--metric {args.metric}: expected one of {sorted(similarity.METRICS)}")
  m = zoo.manifest["data"]
  x = data.load(m["name"], **m.get("kwargs", {})).x_test[:args.examples]
  metric = similarity.METRICS[args.metric]
  if args.debiased:
    metric = partial(metric, debiased=True)
  net = zoo.model()
  feats = [similarity.tap_features(net, zoo.variables(r), x, reduce=args.reduce) for r in rows]
  mat, names_r, names_c = similarity.layer_matrix(feats[0], feats[-1], metric=metric)
  ids = [zoo.table.id.iloc[r] if "id" in zoo.table else str(r) for r in rows]
  table = pd.DataFrame(np.asarray(mat), index=names_r, columns=names_c)
  print(f"{args.metric}{' (debiased)' if args.debiased else ''}: rows {ids[0]} x {ids[-1]}, "
        f"{len(x)} test inputs, maps reduced by {args.reduce}\n{table.round(3).to_string()}")
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    table.to_csv(os.path.join(args.out, "similarity.csv"))
    plot_matrix(table, os.path.join(args.out, "similarity.png"),
                f"{args.metric}: {ids[0]} (rows) vs {ids[-1]} (columns)")


def _merge(args, rest):
  import jax

  from jatlas import io, merge
  if rest:
    raise SystemExit(f"unexpected arguments {rest}")
  missing = [p for p in [args.base, *args.models] if p and not os.path.isfile(p)]
  if missing:
    raise SystemExit(f"no such file(s): {missing}")
  if args.method != "average" and not args.base:
    raise SystemExit(f"{args.method} needs --base (the model the others were fine-tuned from)")
  models = [io.load_file(p) for p in args.models]
  base = io.load_file(args.base) if args.base else None
  if args.method == "average":
    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    out, params = merge.average(models, weights), {"weights": weights}
  elif args.method == "task_arithmetic":
    out, params = merge.task_arithmetic(base, models, args.lam), {"lam": args.lam}
  elif args.method == "ties":
    out = merge.ties(base, models, args.density, args.lam)
    params = {"density": args.density, "lam": args.lam}
  else:
    out = merge.dare(base, models, args.p, jax.random.key(args.seed), args.lam)
    params = {"p": args.p, "lam": args.lam, "seed": args.seed}
  merge.save_merged(args.out, out, method=args.method, params=params,
                    parents=[os.path.abspath(p) for p in args.models],
                    base=os.path.abspath(args.base) if args.base else None)
  print(f"{args.method} of {len(models)} models -> {args.out} ({params})")


def add_parsers(sub) -> None:
  sim = sub.add_parser("similarity", help="layer x layer similarity of zoo checkpoints")
  sim.add_argument("zoo_dir")
  sim.add_argument("--rows", required=True, help="one or two members-table rows, e.g. 0,5")
  sim.add_argument("--metric", default="linear_cka")
  sim.add_argument("--debiased", action="store_true", help="the debiased CKA estimator")
  sim.add_argument("--reduce", default="mean", choices=("mean", "flatten"),
                   help="how conv maps become features")
  sim.add_argument("--examples", type=int, default=512, help="test inputs used")
  sim.add_argument("--out", help="directory for similarity.csv and similarity.png")
  sim.set_defaults(fn=_similarity)
  mg = sub.add_parser("merge", help="merge flax-layout safetensors checkpoints")
  mg.add_argument("method", choices=MERGE_METHODS)
  mg.add_argument("--base", help="the common parent (all methods but average)")
  mg.add_argument("--models", nargs="+", required=True)
  mg.add_argument("--out", required=True)
  mg.add_argument("--lam", type=float, default=1.0)
  mg.add_argument("--density", type=float, default=0.2)
  mg.add_argument("--p", type=float, default=0.9)
  mg.add_argument("--seed", type=int, default=0)
  mg.add_argument("--weights", help="average: comma-separated weights")
  mg.set_defaults(fn=_merge)
