"""Parents of a fine-tuning population: checkpoints of an existing zoo.

Member i of a fine-tuning run starts from parent checkpoint i % P; the parent's
row id and zoo are recorded in the child's members table (lineage for the atlas).
Modules named in `reinit` (e.g. "head", for a parent fine-tuned into a task with
another number of classes) start from the child's own initialisation instead;
every other tensor must match the child's shape.

Usage:
  parents = load_parents("runs/base", epoch=-1, reinit=("head",), child_shapes=shapes)
  params, state = parents.start(spec.parent_index, m_pad, mesh)
"""
import dataclasses
import difflib
import os

import numpy as np

from jatlas.zoo import sharding, store


class ParentMismatchError(ValueError):
  """The parent zoo's tensors do not fit the child's net; the message lists each."""


@dataclasses.dataclass(frozen=True)
class Parents:
  dir: str             # absolute path of the parent zoo
  zoo: store.Zoo
  rows: np.ndarray     # table rows of the parent checkpoints, in member order
  row_ids: list
  reinit: tuple = ()   # modules the children initialise themselves

  def start(self, parent_index_M, m_pad: int, mesh):
    """(params, state) of each member's parent without the re-initialised modules,
    leading member axis (padded to m_pad), sharded over the mesh."""
    pad = np.repeat(parent_index_M[:1], m_pad - len(parent_index_M))
    idx = self.rows[np.concatenate([parent_index_M, pad])]
    kept = [n for n in self.zoo.names if not _reinit(n, self.reinit)]
    variables = self.zoo.stacked_variables(idx, names=kept)
    params = variables.pop("params", {})
    return sharding.put_members((params, variables), mesh)


def _reinit(name: str, modules) -> bool:
  """Whether flat tensor `name` (collection/module/...) lies in one of `modules`."""
  path = name.split("/", 1)[1]
  return any(path == m or path.startswith(m + "/") for m in modules)


def check_fits(zoo_dir: str, parent_shapes: dict, child_shapes: dict, reinit) -> None:
  """Raises ParentMismatchError listing every tensor that differs between parent and
  child (name sets and shapes), outside the re-initialised modules."""
  modules = sorted({n.split("/")[1] for n in child_shapes})
  problems = []
  for m in reinit:
    if not any(_reinit(n, [m]) for n in child_shapes):
      near = difflib.get_close_matches(m, modules, n=1)
      problems.append(f"zoo.reinit names {m!r}, not a module of the child net"
                      f"{f' (did you mean {near[0]!r}?)' if near else ''}; modules {modules}")
  keep = lambda shapes: {n: tuple(s) for n, s in shapes.items() if not _reinit(n, reinit)}
  parent, child = keep(parent_shapes), keep(child_shapes)
  for n in sorted(parent.keys() | child.keys()):
    if n not in child:
      problems.append(f"{n}: in the parent, not in the child net")
    elif n not in parent:
      problems.append(f"{n}: in the child net, not in the parent")
    elif parent[n] != child[n]:
      problems.append(f"{n}: shape {parent[n]} in the parent, {child[n]} in the child net")
  if problems:
    hint = ("; to start a module from scratch (e.g. a new head), set "
            "zoo.reinit=('head',)") if not reinit else ""
    raise ParentMismatchError(f"cannot fine-tune from parent zoo {zoo_dir}{hint}:\n  "
                              + "\n  ".join(problems))


def load_parents(parent_dir: str, epoch: int = -1, *, reinit=(),
                 child_shapes: dict | None = None) -> Parents | None:
  """Final (epoch=-1) or epoch-`epoch` healthy checkpoints of the zoo at `parent_dir`;
  child_shapes: {flat name: shape} of the child's variables, checked against them."""
  if not parent_dir:
    return None
  zoo = store.Zoo.open(parent_dir)
  if child_shapes is not None:
    parent_shapes = {n: s["shape"] for n, s in zoo.manifest["tensors"].items()}
    check_fits(zoo.dir, parent_shapes, child_shapes, tuple(reinit))
  t = zoo.table
  pick = (t["final"] if epoch == -1 else t["epoch"] == epoch) & (t["status"] == "ok")
  rows = np.flatnonzero(pick.to_numpy())
  if not len(rows):
    raise ValueError(f"parent zoo {parent_dir} has no healthy checkpoint at "
                     f"{'the final epoch' if epoch == -1 else f'epoch {epoch}'}")
  return Parents(dir=os.path.abspath(zoo.dir), zoo=zoo, rows=rows,
                 row_ids=t["id"].to_numpy()[rows].tolist(), reinit=tuple(reinit))
