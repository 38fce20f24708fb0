"""The zoo format: safetensors shards of stacked member tensors + a members table.

A zoo directory holds
  zoo.json              manifest: model, data, tasks, tensor names/shapes, shards
  members.parquet       one row per member and checkpoint (id, seed, task, hparams,
                        metrics, epoch, step, parent_id, relation, shard, index)
  params-eNNNN.safetensors  tensors named like `params/conv1/kernel`, shape
                        [members, *tensor_shape], one shard per saved epoch.
Everything is readable without jatlas (safetensors + pandas).

Usage:
  zoo = Zoo.open("runs/digits")
  len(zoo), zoo.table.val_acc.mean()
  w = zoo.stacked("params/conv1/kernel")     # [rows, 5, 5, 1, 6], read lazily
  X = zoo.flat()                             # [rows, n_params]
  logits = zoo.model().apply(zoo.variables(3), x_NHWC)
"""
import json
import os
from typing import Sequence

import numpy as np
import pandas as pd
from flax import traverse_util
from safetensors import safe_open

from jatlas import files

FORMAT = "jatlas-zoo"
VERSION = 1
MANIFEST = "zoo.json"
TABLE = "members.parquet"


class ZooFormatError(ValueError):
  """A zoo directory or shard is missing, truncated or inconsistent."""


def flatten_variables(variables) -> dict:
  """{'params': {'conv1': {'kernel': w}}} -> {'params/conv1/kernel': w}."""
  return traverse_util.flatten_dict(variables, sep="/")


def unflatten_variables(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat, sep="/")


def shard_name(epoch: int) -> str:
  return f"params-e{epoch:04d}.safetensors"


def write_shard(zoo_dir: str, epoch: int, tensors_M: dict) -> str:
  """Writes stacked tensors [M, ...] of one saved epoch; returns the file name."""
  name = shard_name(epoch)
  members = {int(np.shape(v)[0]) for v in tensors_M.values()}
  files.write_safetensors(os.path.join(zoo_dir, name), tensors_M, {
      "format": FORMAT, "epoch": str(epoch), "members": str(members.pop())})
  return name


def _read_manifest(zoo_dir: str) -> dict:
  path = os.path.join(zoo_dir, MANIFEST)
  if not os.path.isfile(path):
    raise ZooFormatError(f"{zoo_dir} is not a zoo: {MANIFEST} not found")
  with open(path) as f:
    manifest = json.load(f)
  if manifest.get("format") != FORMAT:
    raise ZooFormatError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
  return manifest


def _check_shard(path: str, tensors: dict, members: int) -> None:
  """Opens the shard header and checks every tensor against the manifest."""
  if not os.path.isfile(path):
    raise ZooFormatError(f"missing zoo shard {path}")
  try:
    with safe_open(path, framework="numpy") as f:
      keys = set(f.keys())
      shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
  except Exception as e:  # safetensors raises its own error type on bad headers
    raise ZooFormatError(f"corrupt or truncated zoo shard {path}: {e}") from e
  if keys != set(tensors):
    raise ZooFormatError(f"{path}: tensors {sorted(keys ^ set(tensors))} differ from "
                         f"the manifest (expected {sorted(tensors)})")
  for k, spec in tensors.items():
    expected = (members, *spec["shape"])
    if shapes[k] != expected:
      raise ZooFormatError(f"{path}: tensor {k} has shape {shapes[k]}, expected {expected}")


class Zoo:
  """Read access to a zoo directory; tensors are read lazily, shard by shard."""

  def __init__(self, zoo_dir: str, manifest: dict, table: pd.DataFrame):
    self.dir, self.manifest, self.table = zoo_dir, manifest, table
    self.names = sorted(manifest["tensors"])

  @classmethod
  def open(cls, zoo_dir: str, *, check: bool = True) -> "Zoo":
    manifest = _read_manifest(zoo_dir)
    table_path = os.path.join(zoo_dir, TABLE)
    if not os.path.isfile(table_path):
      raise ZooFormatError(f"{zoo_dir}: members table {TABLE} not found")
    table = pd.read_parquet(table_path)
    if check:
      for shard in manifest["shards"]:
        _check_shard(os.path.join(zoo_dir, shard["file"]), manifest["tensors"], shard["members"])
      sizes = {s["file"]: s["members"] for s in manifest["shards"]}
      bad = table[[idx >= sizes.get(f, 0) for f, idx in zip(table["shard"], table["index"])]]
      if len(bad):
        raise ZooFormatError(f"{table_path}: rows {bad['id'].tolist()[:5]} point past their shard")
    return cls(zoo_dir, manifest, table)

  def __len__(self) -> int:
    return len(self.table)

  def __repr__(self) -> str:
    return f"Zoo({self.dir!r}, rows={len(self)}, model={self.manifest['model']['name']})"

  def _rows(self, rows) -> np.ndarray:
    return np.arange(len(self)) if rows is None else np.atleast_1d(np.asarray(rows))

  def stacked(self, name: str, rows: Sequence[int] | None = None) -> np.ndarray:
    """One tensor for the given table rows (default all) -> [R, *shape]."""
    if name not in self.manifest["tensors"]:
      raise KeyError(f"no tensor {name!r} in zoo {self.dir}; known: {self.names}")
    rows = self._rows(rows)
    spec = self.manifest["tensors"][name]
    out = np.empty((len(rows), *spec["shape"]), dtype=spec["dtype"])
    sub = self.table.iloc[rows]
    for shard, group in pd.Series(np.arange(len(rows))).groupby(sub["shard"].to_numpy()):
      idx = sub["index"].to_numpy()[group.to_numpy()]
      with safe_open(os.path.join(self.dir, shard), framework="numpy") as f:
        block = f.get_slice(name)[int(idx.min()):int(idx.max()) + 1]
      out[group.to_numpy()] = block[idx - idx.min()]
    return out

  def variables(self, row: int) -> dict:
    """All collections of one row, nested: {'params': ..., 'batch_stats': ...}."""
    return unflatten_variables({n: self.stacked(n, [row])[0] for n in self.names})

  def params(self, row: int) -> dict:
    """The 'params' pytree of one row."""
    return self.variables(row)["params"]

  def flat(self, rows: Sequence[int] | None = None, collection: str = "params") -> np.ndarray:
    """Rows x parameters matrix, tensors concatenated in sorted-name order."""
    names = [n for n in self.names if n.startswith(collection + "/")]
    rows = self._rows(rows)
    return np.concatenate([self.stacked(n, rows).reshape(len(rows), -1) for n in names], axis=1)

  def model(self):
    """The flax module every row of this zoo is a set of variables for."""
    from jatlas import nets  # zoo -> nets is the allowed direction
    m = self.manifest["model"]
    return nets.build(m["name"], **m["kwargs"])

  @classmethod
  def from_hub(cls, repo_id: str, *, revision: str | None = None, **kw) -> "Zoo":
    """Opens a zoo pushed as a Hub dataset repo, through the Hugging Face cache.

    `kw`: cache_dir, token, check (see jatlas.io.hub.open_zoo).
    """
    from jatlas.io import hub  # io sits above zoo; import only when asked
    return hub.open_zoo(repo_id, revision=revision, **kw)
