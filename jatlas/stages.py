"""An experiment's finished stages, kept in OUT/stages.json, so a run interrupted after
hours of encoder fits resumes after its last finished stage instead of from the start.

Each stage's result is JSON (floats, lists, dicts) and is written, atomically, as soon
as the stage ends. The record names what the results depend on (the config and the
inputs, e.g. the zoo's manifest checksum): a rerun whose config or inputs differ is
refused with the differing fields, never mixed with the old results.

Usage:
  stages = Stages(out, cfg, inputs={"zoo": sha256(os.path.join(out, "zoo", "zoo.json"))})
  acc = stages.run("task_id/statnn", lambda: float(fit_and_score()))  # once per OUT
"""
import json
import os
from typing import Callable

from jatlas.files import write_json
from jatlas.zoo.train import differences

FILE = "stages.json"


class StageMismatchError(ValueError):
  """OUT/stages.json was written under another config or other inputs."""


class Stages:
  """Results of finished stages by name (module docstring)."""

  def __init__(self, out_dir: str, cfg, inputs: dict | None = None, verbose: bool = True):
    self.path = os.path.join(out_dir, FILE)
    self.key = _json({"config": cfg.to_dict(), "inputs": inputs or {}})
    self.verbose = verbose
    self.done: dict = {}
    if os.path.isfile(self.path):
      with open(self.path) as f:
        old = json.load(f)
      diff = differences({k: old.get(k) for k in self.key}, self.key, where=f"in {self.path}")
      if diff:
        raise StageMismatchError(
            f"{self.path} holds stages of another run ({len(diff)} difference"
            f"{'s' * (len(diff) > 1)}):\n  " + "\n  ".join(diff) +
            f"\nremove {self.path} to recompute them, or choose another --out")
      self.done = old["stages"]

  def run(self, name: str, fn: Callable[[], object]):
    """fn()'s result, from an earlier run when stage `name` finished there."""
    if name in self.done:
      if self.verbose:
        print(f"stage {name}: finished in an earlier run ({self.path})", flush=True)
      return self.done[name]
    # the JSON round trip makes a first run return exactly what a resumed one reads
    self.done[name] = _json(fn())
    write_json(self.path, {**self.key, "stages": self.done})
    return self.done[name]


def _json(obj):
  try:
    return json.loads(json.dumps(obj, allow_nan=True))
  except TypeError as e:
    raise TypeError(f"a stage result must be JSON (floats, lists, dicts): {e}") from None
