"""A finished zoo reused when its config matches, else trained (or resumed).

Experiments build their zoos with this, so a rerun skips finished zoos and a
directory holding a zoo of another config is refused with the fields that differ.

Usage:
  zoo = open_or_train(cfg, "runs/model_trees/zoos/mlp_base")
"""
import json
import os

from jatlas.zoo.store import TABLE, Zoo
from jatlas.zoo.train import differences, train_zoo


def open_or_train(cfg, path: str) -> Zoo:
  """The finished zoo at `path` if it was trained from `cfg` (else SystemExit naming
  the fields that differ), or a newly trained (or resumed) one."""
  if not os.path.isfile(os.path.join(path, TABLE)):
    return train_zoo(cfg, path)
  with open(os.path.join(path, "config.json")) as f:
    old = json.load(f)
  new = json.loads(json.dumps(cfg.to_dict(), default=str))
  diff = differences(old, new, where="there")
  if diff:
    raise SystemExit(f"{path} holds a finished zoo of another config; remove it or choose "
                     "another --out:\n  " + "\n  ".join(diff))
  return Zoo.open(path)
