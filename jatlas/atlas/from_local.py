"""Atlases from jatlas's own records: zoo directories and (merged) safetensors files.

Zoos (`from_zoo`): every checkpoint row of each zoo becomes a node
`<zoo directory name>/<row id>` (e.g. `base/m00003@e0005`) with source {"kind": "zoo",
"dir": absolute path, "row": table row}, the table's metric columns as traits and
its other member columns (task, hyper-parameters, epoch, status, ...) as meta; all
documented. Edges (documented, confidence 1):
- lineage: a member's lineage columns (`parent_id`, `parent_zoo`, `relation`) name
  the checkpoint it started from; the edge goes from that checkpoint
  (`basename(parent_zoo)/parent_id`) to the member's first kept checkpoint.
- continued training: consecutive kept checkpoints of one member (epoch e1 < e2)
  are linked e1 -> e2 as "finetune": the later one is the earlier one trained on.
So a member is a chain below its parent, and every row's lineage columns are its
nearest ancestor outside its own member (`lineage_columns` reads them back).
With final_only=True only each member's final checkpoint is a node, linked
straight to its lineage parent (the node set `jatlas atlas recover` charts).
Parents outside the given zoos become placeholders (source: their zoo directory).

Files (`from_files`): a node per safetensors file (id: the file name without
suffix, or `ids`), source {"kind": "file", "path"}; a merged file's recipe
(jatlas.merge.read_recipe) gives a "merge" edge from every listed parent and meta
merge_method / merge_params / merge_base.

Usage:
  atlas = from_zoo(["runs/base", "runs/ft"])          # ids like "ft/m00002@e0001"
  atlas = from_zoo(["runs/base", "runs/ft"], final_only=True)
  atlas = from_files(["merged.safetensors"], atlas=atlas)   # parents: zoo ids in its recipe
  lineage_columns(atlas, "ft")    # DataFrame id, parent_id, parent_zoo (name), relation
"""
import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from jatlas.atlas.graph import Atlas

LINEAGE = ("parent_id", "parent_zoo", "relation", "reinit")
STORAGE = ("shard", "index")  # where the tensors are: in `source`, not meta


def zoo_name(zoo_dir: str) -> str:
  return os.path.basename(os.path.normpath(os.path.abspath(zoo_dir)))


def _zoo_nodes(atlas: Atlas, zoo, name: str, rows, metrics) -> None:
  t = zoo.table
  meta_cols = [c for c in t.columns if c not in (*metrics, *LINEAGE, *STORAGE, "id")]
  for r in rows:
    row = t.iloc[r]
    atlas.add_node(f"{name}/{row['id']}", source={"kind": "zoo", "dir": os.path.abspath(zoo.dir),
                                                  "row": int(r)},
                   traits={k: row[k] for k in metrics if k in t.columns},
                   meta={k: row[k] for k in meta_cols})


def _zoo_edges(zoo, name: str, rows) -> list[tuple[str, str, str]]:
  """(parent, child, relation) of the kept rows (see the module docstring)."""
  t = zoo.table.iloc[rows].sort_values(["member", "epoch"], kind="stable")
  edges = []
  for _, member in t.groupby("member", sort=True):
    ids = [f"{name}/{i}" for i in member["id"]]
    first = member.iloc[0]
    if first["parent_id"]:
      edges.append((f"{zoo_name(first['parent_zoo'])}/{first['parent_id']}", ids[0],
                    first["relation"] or "finetune"))
    edges += [(a, b, "finetune") for a, b in zip(ids, ids[1:])]
  return edges


def from_zoo(zoo_dirs: Sequence[str] | str, *, final_only: bool = False,
             atlas: Atlas | None = None) -> Atlas:
  """An atlas of zoo checkpoints and their documented lineage (module docstring)."""
  from jatlas.zoo.rows import METRICS  # jatlas.zoo imports jax: only when zoos are read
  from jatlas.zoo.store import Zoo
  atlas = Atlas() if atlas is None else atlas
  zoo_dirs = [zoo_dirs] if isinstance(zoo_dirs, str) else list(zoo_dirs)
  names = [zoo_name(d) for d in zoo_dirs]
  clash = sorted({n for n in names if names.count(n) > 1})
  if clash:
    raise ValueError(f"zoo_dirs {zoo_dirs}: directory names {clash} repeat; node ids "
                     f"(<directory name>/<row id>) would collide")
  zoos = [Zoo.open(d) for d in zoo_dirs]
  edges = []
  for zoo, name in zip(zoos, names):
    rows = np.flatnonzero(zoo.table["final"]) if final_only else np.arange(len(zoo.table))
    _zoo_nodes(atlas, zoo, name, rows, METRICS)
    edges += _zoo_edges(zoo, name, rows)
  for parent, child, relation in edges:
    if parent not in atlas:
      atlas.add_node(parent, placeholder=True,
                     source={"kind": "zoo", "dir": _parent_dir(zoos, child)})
    atlas.add_edge(parent, child, relation)
  return atlas


def _parent_dir(zoos, child: str) -> str:
  name, row_id = child.split("/", 1)
  zoo = next(z for z in zoos if zoo_name(z.dir) == name)
  return str(zoo.table.loc[zoo.table["id"] == row_id, "parent_zoo"].iloc[0])


def lineage_columns(atlas: Atlas, zoo: str) -> pd.DataFrame:
  """The lineage columns of zoo `zoo`'s nodes as the atlas records them: per row id, the
  nearest ancestor outside the row's own member (parent_id, parent_zoo as a directory
  name, relation of the edge into the member); "" without one."""
  out = []
  for node in atlas.graph.nodes:
    name, _, row_id = node.partition("/")
    if name != zoo:
      continue
    current = node
    while True:
      parents = list(atlas.graph.predecessors(current))
      if not parents or _member_of(atlas, parents[0]) != _member_of(atlas, node):
        break
      current = parents[0]
    if parents:
      p_name, _, p_id = parents[0].partition("/")
      relation = atlas.graph.edges[parents[0], current]["relation"]
      out.append((row_id, p_id, p_name, relation))
    else:
      out.append((row_id, "", "", ""))
  return pd.DataFrame(out, columns=["id", "parent_id", "parent_zoo", "relation"])


def _member_of(atlas: Atlas, node: str) -> tuple[str, str | None]:
  """(zoo name, member id) of a zoo checkpoint node."""
  return node.partition("/")[0], atlas.graph.nodes[node]["meta"].get("member_id")


def from_files(paths: Iterable[str], *, ids: Sequence[str] | None = None,
               atlas: Atlas | None = None) -> Atlas:
  """An atlas of safetensors files; merged files link to their recipe's parents."""
  from jatlas.merge.recipe import read_recipe  # imports jax: only when files are read
  atlas = Atlas() if atlas is None else atlas
  paths = list(paths)
  ids = [os.path.splitext(os.path.basename(p))[0] for p in paths] if ids is None else list(ids)
  problems = [f"{p} not found" for p in paths if not os.path.isfile(p)]
  if len(ids) != len(paths):
    problems.append(f"ids: {len(ids)} ids for {len(paths)} paths")
  problems += [f"id {i!r} repeats" for i in sorted({i for i in ids if ids.count(i) > 1})]
  if problems:
    raise ValueError("from_files: " + "; ".join(problems))
  for node, path in zip(ids, paths):
    recipe = read_recipe(path)
    meta = {} if recipe is None else {"merge_method": recipe.get("method"),
                                      "merge_params": recipe.get("params") or {},
                                      "merge_base": recipe.get("base")}
    atlas.add_node(node, source={"kind": "file", "path": os.path.abspath(path)}, meta=meta)
    for parent in (recipe or {}).get("parents", ()):
      if parent not in atlas:
        atlas.add_node(parent, placeholder=True)
      atlas.add_edge(parent, node, "merge")
  return atlas
