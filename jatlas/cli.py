"""The `jatlas` command line.

  jatlas zoo train --config configs/hypernet_digits.py[:smoke] --out DIR [--config.zoo.members=64]
  jatlas zoo train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # per host
  jatlas zoo info DIR
"""
import argparse
import json
import os
import sys

import numpy as np


def _zoo_train(args, rest):
  import jax
  if args.coordinator or args.distributed:  # multi-host: must precede any JAX computation
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  from jatlas.config import load_config
  from jatlas.zoo.train import train_zoo
  cfg = load_config(rest)
  zoo = train_zoo(cfg, args.out, progress=not args.no_progress)
  if jax.process_index() == 0:
    print(zoo_summary(zoo))


def zoo_summary(zoo) -> str:
  """A few lines a researcher wants after training: size, health, accuracy per epoch."""
  t, m = zoo.table, zoo.manifest
  n_params = sum(int(np.prod(s["shape"])) for k, s in m["tensors"].items()
                 if k.startswith("params/"))
  lines = [f"zoo {zoo.dir}",
           f"  model {m['model']['name']} ({n_params:,} params), data {m['data']['name']}, "
           f"{len(m['tasks'])} tasks, {m['members']} members, {len(t)} checkpoints",
           f"  diverged members: {int((t[t['final']]['status'] != 'ok').sum())}",
           "  epoch  test_acc(mean/max)  test_balanced_acc(mean/max)"]
  for epoch, g in t[t["status"] == "ok"].groupby("epoch"):
    lines.append(f"  {epoch:5d}  {g.test_acc.mean():.3f}/{g.test_acc.max():.3f}"
                 f"         {g.test_bacc.mean():.3f}/{g.test_bacc.max():.3f}")
  if "train_seconds" in m:
    lines.append(f"  trained in {m['train_seconds']:.0f} s")
  return "\n".join(lines)


def _zoo_info(args, rest):
  from jatlas.zoo.store import Zoo
  if rest:
    raise SystemExit(f"unexpected arguments {rest}")
  zoo = Zoo.open(args.dir)
  print(zoo_summary(zoo))
  size = sum(os.path.getsize(os.path.join(zoo.dir, s["file"])) for s in zoo.manifest["shards"])
  print(f"  {len(zoo.manifest['shards'])} shards, {size / 2**20:.1f} MiB")
  if args.json:
    print(json.dumps({k: v for k, v in zoo.manifest.items() if k != "tensors"}, indent=1))


def main(argv=None):
  parser = argparse.ArgumentParser(prog="jatlas", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="group", required=True)
  zoo = sub.add_parser("zoo", help="train and inspect model zoos").add_subparsers(
      dest="cmd", required=True)
  train = zoo.add_parser("train", help="train a zoo from a config (resumes if interrupted)")
  train.add_argument("--out", required=True, help="zoo directory to write")
  train.add_argument("--no-progress", action="store_true")
  dist = train.add_argument_group("multi-host (jax.distributed)")
  dist.add_argument("--distributed", action="store_true",
                    help="jax.distributed.initialize() with cluster auto-detection")
  dist.add_argument("--coordinator", help="HOST:PORT of process 0")
  dist.add_argument("--num-processes", type=int)
  dist.add_argument("--process-id", type=int)
  train.set_defaults(fn=_zoo_train)
  info = zoo.add_parser("info", help="summarise a zoo directory")
  info.add_argument("dir")
  info.add_argument("--json", action="store_true", help="also print the manifest")
  info.set_defaults(fn=_zoo_info)
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  args.fn(args, rest)


if __name__ == "__main__":
  main()
