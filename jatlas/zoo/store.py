"""The zoo format: safetensors shards of stacked member tensors + a members table.

A zoo directory holds
  zoo.json              manifest: model, data, tasks, input_shape, members,
                        tensors {flat name: {shape, dtype}}, shards [{file,
                        epoch, members, sha256}]
  members.parquet       one row per member and checkpoint; `shard` and `index`
                        locate its tensors (columns: see jatlas.zoo.rows)
  params-eNNNN.safetensors  tensors named like `params/conv1/kernel`, shape
                        [members, *tensor_shape], one shard per saved epoch
                        (per epoch and wave, params-eNNNN-wNNNN, when the zoo was
                        trained in waves of members: `jatlas.zoo.waves`).
Everything is readable without jatlas (safetensors + pandas). Opening checks
every shard header against the manifest (names, shapes, dtypes); verify=True
also recomputes each shard's sha256, which reads every byte.

Usage:
  zoo = Zoo.open("runs/digits")              # Zoo.open(d, verify=True): checksums too
  zoo.num_members, zoo.num_checkpoints, zoo.table.val_acc.mean()
  w = zoo.stacked("params/conv1/kernel")     # [rows, 5, 5, 1, 6], read lazily
  v = zoo.stacked_variables([0, 3])          # {"params": ..., ...}, leaves [2, *shape]
  X = zoo.flat()                             # [rows, n_params]
  logits = zoo.model().apply(zoo.variables(3), x_NHWC)
"""
import json
import os
from typing import Sequence

import numpy as np
import pandas as pd

from jatlas import files, flat_names, tensor_files

FORMAT = "jatlas-zoo"
VERSION = 1
MANIFEST = "zoo.json"
TABLE = "members.parquet"
REQUIRED = ("format", "model", "data", "input_shape", "members", "tensors", "shards")

# The lead's train.py and parents.py import these from here.
flatten_variables = flat_names.flatten_variables
unflatten_variables = flat_names.unflatten_variables


class ZooFormatError(ValueError):
  """A zoo directory or shard is missing, truncated or inconsistent."""


def shard_name(epoch: int, wave: int | None = None) -> str:
  """params-eNNNN.safetensors; a zoo trained in waves has one shard per epoch and wave,
  params-eNNNN-wNNNN.safetensors (the table's shard and index columns locate rows)."""
  return f"params-e{epoch:04d}{'' if wave is None else f'-w{wave:04d}'}.safetensors"


def write_shard(zoo_dir: str, epoch: int, tensors_M: dict, name: str | None = None) -> dict:
  """Writes stacked tensors [M, ...] of one saved epoch (to `name`, default
  shard_name(epoch)); returns its manifest entry {"file", "epoch", "members", "sha256"}."""
  name = name or shard_name(epoch)
  leading = {k: int(np.shape(v)[0]) for k, v in tensors_M.items()}
  if len(set(leading.values())) != 1:
    raise ValueError(f"shard {name}: tensors need one leading member axis, got {leading}")
  members = next(iter(leading.values()))
  path = os.path.join(zoo_dir, name)
  files.write_safetensors(path, tensors_M, {
      "format": FORMAT, "epoch": str(epoch), "members": str(members)})
  return {"file": name, "epoch": int(epoch), "members": members, "sha256": files.sha256(path)}


def _read_manifest(zoo_dir: str) -> dict:
  path = os.path.join(zoo_dir, MANIFEST)
  if not os.path.isfile(path):
    raise ZooFormatError(f"{zoo_dir} is not a zoo: {MANIFEST} not found")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
    raise ZooFormatError(f"{path} is not valid JSON (truncated or damaged?): {e}") from e
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    raise ZooFormatError(f"{path}: format {got!r}, expected {FORMAT!r}")
  missing = [k for k in REQUIRED if k not in manifest]
  if missing:
    raise ZooFormatError(f"{path}: missing keys {missing}")
  return manifest


def _tensor_problems(path: str, name: str, info: tensor_files.TensorInfo, spec: dict,
                     members: int) -> list[str]:
  """How one shard tensor's header differs from its manifest entry."""
  problems = []
  expected = (members, *spec["shape"])
  if info.shape != expected:
    problems.append(f"{path}: tensor {name} has shape {info.shape}, expected {expected}")
  if info.dtype != spec["dtype"]:
    problems.append(f"{path}: tensor {name} is stored as {info.dtype}, but {MANIFEST} "
                    f"says {spec['dtype']}")
  return problems


def open_shard(path: str):
  """A zoo shard as a `tensor_files.TensorFile` (context manager)."""
  return tensor_files.open_tensors(path, error=ZooFormatError, what="zoo shard")


def _shard_problems(path: str, tensors: dict, members: int) -> list[str]:
  """Every way the shard's header disagrees with the manifest (names, shapes, dtypes)."""
  try:
    with open_shard(path) as f:
      header = f.header()
  except ZooFormatError as e:  # missing, truncated: reported with the other shards' problems
    return [str(e)]
  if header.keys() != tensors.keys():
    missing, extra = sorted(tensors.keys() - header), sorted(header.keys() - tensors)
    return [f"{path}: tensors {sorted(missing + extra)} differ from the manifest "
            f"(missing {missing}, unexpected {extra})"]
  return [p for k, spec in tensors.items()
          for p in _tensor_problems(path, k, header[k], spec, members)]


def _verify_shards(zoo_dir: str, manifest: dict) -> None:
  """Recomputes every shard's sha256; one ZooFormatError lists every bad shard."""
  shards = manifest["shards"]
  unchecked = [s["file"] for s in shards if "sha256" not in s]
  if shards and len(unchecked) == len(shards):
    raise ZooFormatError(
        f"{os.path.join(zoo_dir, MANIFEST)} records no shard checksums (written before "
        f"jatlas recorded them): none of its {len(shards)} shards can be verified")
  problems = []
  for s in shards:
    path = os.path.join(zoo_dir, s["file"])
    if "sha256" not in s:
      problems.append(f"{s['file']}: no sha256 in {MANIFEST}, cannot be verified")
    elif not os.path.isfile(path):
      problems.append(f"{s['file']}: missing")
    elif (digest := files.sha256(path)) != s["sha256"]:
      problems.append(f"{s['file']}: sha256 {digest}, {MANIFEST} records {s['sha256']}")
  if problems:
    raise ZooFormatError(f"zoo {zoo_dir}: {len(problems)} of {len(shards)} shards fail "
                         "verification:\n  " + "\n  ".join(problems))


class Zoo:
  """Read access to a zoo directory; tensors are read lazily, shard by shard."""

  def __init__(self, zoo_dir: str, manifest: dict, table: pd.DataFrame):
    self.dir, self.manifest, self.table = zoo_dir, manifest, table
    self.names = sorted(manifest["tensors"])

  @classmethod
  def open(cls, zoo_dir: str, *, check: bool = True, verify: bool = False) -> "Zoo":
    """check: shard headers against the manifest (cheap); verify: shard checksums
    (reads every byte)."""
    manifest = _read_manifest(zoo_dir)
    table_path = os.path.join(zoo_dir, TABLE)
    if not os.path.isfile(table_path):
      raise ZooFormatError(f"{zoo_dir}: members table {TABLE} not found")
    table = pd.read_parquet(table_path)
    if check:
      problems = [p for s in manifest["shards"] for p in _shard_problems(
          os.path.join(zoo_dir, s["file"]), manifest["tensors"], s["members"])]
      if problems:
        raise ZooFormatError("\n".join(problems))
      sizes = {s["file"]: s["members"] for s in manifest["shards"]}
      bad = table[[idx >= sizes.get(f, 0) for f, idx in zip(table["shard"], table["index"])]]
      if len(bad):
        raise ZooFormatError(f"{table_path}: rows {bad['id'].tolist()[:5]} point past their shard")
    if verify:
      _verify_shards(zoo_dir, manifest)
    return cls(zoo_dir, manifest, table)

  @property
  def num_members(self) -> int:
    """Members of the population (each has one row per saved checkpoint)."""
    return int(self.manifest["members"])

  @property
  def num_checkpoints(self) -> int:
    """Rows of the members table: one per member and saved epoch it reached."""
    return len(self.table)

  def __repr__(self) -> str:
    return (f"Zoo({self.dir!r}, members={self.num_members}, "
            f"checkpoints={self.num_checkpoints}, model={self.manifest['model']['name']})")

  def _rows(self, rows) -> np.ndarray:
    """Table row numbers (ints, negative from the end, or a boolean mask)."""
    n = self.num_checkpoints
    if rows is None:
      return np.arange(n)
    rows = np.atleast_1d(np.asarray(rows))
    if rows.dtype == bool:
      if len(rows) != n:
        raise IndexError(f"boolean mask of {len(rows)} rows for zoo {self.dir} with {n} rows")
      return np.flatnonzero(rows)
    if rows.size == 0:
      return rows.astype(np.int64)
    if not np.issubdtype(rows.dtype, np.integer):
      raise TypeError(f"rows must be integers or a boolean mask, got dtype {rows.dtype}")
    bad = rows[(rows < -n) | (rows >= n)]
    if len(bad):
      raise IndexError(f"rows {bad[:5].tolist()} out of range: zoo {self.dir} has {n} "
                       f"checkpoints (table rows 0..{n - 1})")
    return rows % n

  def _read(self, names: Sequence[str], rows) -> dict[str, np.ndarray]:
    """{name: [R, *shape]} for table rows `rows`, each shard opened once."""
    unknown = [n for n in names if n not in self.manifest["tensors"]]
    if unknown:
      raise KeyError(f"no tensor {unknown[0]!r} in zoo {self.dir}; known: {self.names}")
    rows = self._rows(rows)
    specs = {n: self.manifest["tensors"][n] for n in names}
    members = {s["file"]: s["members"] for s in self.manifest["shards"]}
    out = {n: np.empty((len(rows), *s["shape"]), dtype=s["dtype"]) for n, s in specs.items()}
    sub = self.table.iloc[rows]
    for shard, group in pd.Series(np.arange(len(rows))).groupby(sub["shard"].to_numpy()):
      at = group.to_numpy()
      idx = sub["index"].to_numpy()[at]
      lo, hi = int(idx.min()), int(idx.max()) + 1
      path = os.path.join(self.dir, shard)
      if shard not in members:
        raise ZooFormatError(f"{TABLE} of zoo {self.dir} points to shard {shard}, which "
                             f"{MANIFEST} does not list")
      with open_shard(path) as f:
        header = f.header()
        problems = [p for n, s in specs.items() for p in (
            [f"{path} has no tensor {n}"] if n not in header
            else _tensor_problems(path, n, header[n], s, members[shard]))]
        if problems:  # never reinterpret bytes as another dtype or shape
          raise ZooFormatError("\n".join(problems))
        for n in names:
          out[n][at] = f.read(n, lo, hi)[idx - lo]
    return out

  def stacked(self, name: str, rows: Sequence[int] | None = None) -> np.ndarray:
    """One tensor for the given table rows (default all) -> [R, *shape]."""
    return self._read([name], rows)[name]

  def stacked_variables(self, rows: Sequence[int] | None = None,
                        names: Sequence[str] | None = None) -> dict:
    """The collections of the given rows, nested ({'params': ..., 'batch_stats': ...}
    as stored), each leaf [R, *shape]; `names`: only these flat tensors."""
    return unflatten_variables(self._read(self.names if names is None else names, rows))

  def variables(self, row: int) -> dict:
    """All collections of one row, nested: {'params': ..., 'batch_stats': ...}."""
    return unflatten_variables({n: v[0] for n, v in self._read(self.names, [row]).items()})

  def params(self, row: int) -> dict:
    """The 'params' pytree of one row."""
    return self.variables(row)["params"]

  def flat(self, rows: Sequence[int] | None = None, collection: str = "params") -> np.ndarray:
    """Rows x parameters matrix, tensors concatenated in sorted-name order."""
    names = [n for n in self.names if n.startswith(collection + "/")]
    if not names:
      raise KeyError(f"no collection {collection!r} in zoo {self.dir}; "
                     f"known: {sorted({n.split('/')[0] for n in self.names})}")
    stacked = self._read(names, rows)
    return np.concatenate([stacked[n].reshape(len(stacked[n]), -1) for n in names], axis=1)

  def model(self):
    """The flax module every row of this zoo is a set of variables for."""
    from jatlas import nets  # zoo -> nets is the allowed direction
    m = self.manifest["model"]
    # JSON made the config's tuples lists; flax modules must stay hashable (jit caches)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in m["kwargs"].items()}
    return nets.build(m["name"], **kwargs)
