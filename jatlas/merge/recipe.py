"""A merged model on disk carries how it was made: method, parameters, parent ids in
the safetensors header (`__metadata__["jatlas_merge"]`, JSON), so an atlas reads a
merge's parents from the file alone.

Usage:
  save_merged("merged.safetensors", params, method="ties",
              params={"density": 0.2, "lam": 1.0}, parents=["base/m00003@e0005", ...],
              base="base/m00000@e0005")
  read_recipe("merged.safetensors")   # {"method", "params", "parents", "base"} or None
"""
import json
from typing import Sequence

from jatlas.io import read_metadata, save_safetensors

KEY = "jatlas_merge"
METHODS = ("average", "slerp", "task_arithmetic", "ties", "dare", "weight_matching")


def save_merged(path: str, tree, *, method: str, parents: Sequence[str], params=None,
                base: str | None = None) -> None:
  if method not in METHODS:
    raise ValueError(f"save_merged: method {method!r}; expected one of {METHODS}")
  if len(parents) < 2 and method != "weight_matching":
    raise ValueError(f"save_merged: a merge has >= 2 parents; got {list(parents)}")
  recipe = {"method": method, "params": dict(params or {}), "parents": list(parents),
            "base": base}
  save_safetensors(path, tree, {KEY: json.dumps(recipe, sort_keys=True)})


def read_recipe(path: str) -> dict | None:
  raw = read_metadata(path).get(KEY)
  if raw is None:
    return None
  try:
    return json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: metadata {KEY!r} is not JSON ({e})") from e
