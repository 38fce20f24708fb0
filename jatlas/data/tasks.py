"""Task sets over a Dataset: which label each example has under each task.

A TaskSet holds, per split, int32 labels [T, N]: the target of example n under
task t, or -1 if the example is not part of that task. All tasks share one
output width, num_classes.

Usage:
  tasks = concat_tasks(one_vs_rest(ds), class_pairs(ds, [(3, 5)]))
  y_TN, mask_TN = tasks.labels["train"], tasks.mask("train")
"""
import dataclasses
import itertools
from typing import Sequence

import numpy as np

from jatlas.data.dataset import SPLITS, Dataset


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TaskSet:
  """T named tasks; labels maps split name -> int32 [T, N_split], -1 = not in task."""
  names: tuple[str, ...]
  num_classes: int
  labels: dict[str, np.ndarray]

  def __post_init__(self):
    object.__setattr__(self, "names", tuple(self.names))
    if len(set(self.names)) != len(self.names):
      dupes = sorted({n for n in self.names if self.names.count(n) > 1})
      raise ValueError(f"TaskSet has duplicate task names {dupes}")
    for split, y in self.labels.items():
      if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.ndim != 2:
        raise ValueError(f"TaskSet labels[{split!r}] must be int32 [T, N], got "
                         f"{type(y).__name__} {getattr(y, 'dtype', '')} {np.shape(y)}")
      if len(y) != len(self.names):
        raise ValueError(f"TaskSet labels[{split!r}] has {len(y)} rows for "
                         f"{len(self.names)} tasks")
      if y.size and (y.min() < -1 or y.max() >= self.num_classes):
        raise ValueError(f"TaskSet labels[{split!r}] span [{y.min()}, {y.max()}], expected "
                         f"-1 or [0, {self.num_classes})")

  def __len__(self) -> int:
    return len(self.names)

  def mask(self, split: str) -> np.ndarray:
    """bool [T, N]: whether each example of `split` belongs to each task."""
    if split not in self.labels:
      raise ValueError(f"unknown split {split!r}; this TaskSet has {sorted(self.labels)}")
    return self.labels[split] >= 0

  def __repr__(self) -> str:
    sizes = ", ".join(f"{s}={y.shape[1]}" for s, y in self.labels.items())
    return f"TaskSet({len(self)} tasks, num_classes={self.num_classes}, {sizes})"


def multiclass(ds: Dataset) -> TaskSet:
  """One task: the dataset's own labels. Name "multiclass"."""
  labels = {s: ds.split(s)[1][None, :].astype(np.int32) for s in SPLITS}
  return TaskSet(("multiclass",), ds.num_classes, labels)


def one_vs_rest(ds: Dataset, classes: Sequence[int] | None = None) -> TaskSet:
  """One binary task per class k (label 1 iff y == k, every example belongs).

  Names "one_vs_rest:<k>"; classes default to all.
  """
  classes = list(range(ds.num_classes)) if classes is None else list(classes)
  _check_classes(ds, classes)
  k_T1 = np.asarray(classes)[:, None]
  labels = {s: (ds.split(s)[1][None, :] == k_T1).astype(np.int32) for s in SPLITS}
  return TaskSet(tuple(f"one_vs_rest:{k}" for k in classes), 2, labels)


def class_subsets(ds: Dataset, subsets: Sequence[Sequence[int]],
                  relabel: bool = True) -> TaskSet:
  """One task per subset of class ids; only its classes belong, labelled by position.

  E.g. subset (3, 5, 7): y=5 -> 1, y=2 -> -1. Names "subset:3-5-7";
  num_classes = the largest subset size. relabel=False keeps the dataset's own
  labels (y=5 -> 5) and its num_classes: a specialist fine-tuned on its classes
  keeps its parent's full head.
  """
  subsets = [list(s) for s in subsets]
  if not subsets:
    raise ValueError("class_subsets needs at least one subset")
  # table_TC[t, c]: label of class c under task t, -1 if c is not in the subset.
  table_TC = np.full((len(subsets), ds.num_classes), -1, np.int32)
  for t, subset in enumerate(subsets):
    if len(subset) < 2 or len(set(subset)) != len(subset):
      raise ValueError(f"subset {subset} must hold at least 2 distinct class ids")
    _check_classes(ds, subset)
    table_TC[t, subset] = np.arange(len(subset)) if relabel else subset
  labels = {s: table_TC[:, ds.split(s)[1]] for s in SPLITS}
  names = tuple("subset:" + "-".join(str(c) for c in s) for s in subsets)
  return TaskSet(names, max(len(s) for s in subsets) if relabel else ds.num_classes, labels)


def class_pairs(ds: Dataset, pairs: Sequence[Sequence[int]] | None = None) -> TaskSet:
  """Binary tasks a-vs-b (a -> 0, b -> 1, other classes -1). Names "pair:a-b".

  pairs default to all unordered pairs a < b.
  """
  if pairs is None:
    pairs = list(itertools.combinations(range(ds.num_classes), 2))
  pairs = [tuple(p) for p in pairs]
  for p in pairs:
    if len(p) != 2:
      raise ValueError(f"class pair {p} must hold exactly 2 class ids")
  tasks = class_subsets(ds, pairs)
  return dataclasses.replace(tasks, names=tuple(f"pair:{a}-{b}" for a, b in pairs))


def concat_tasks(*tasksets: TaskSet) -> TaskSet:
  """Stacks task sets over the same dataset; num_classes is the largest one."""
  if not tasksets:
    raise ValueError("concat_tasks needs at least one TaskSet")
  splits = list(tasksets[0].labels)
  for ts in tasksets:
    if list(ts.labels) != splits:
      raise ValueError(f"cannot concat TaskSets with splits {splits} and {list(ts.labels)}")
    for s in splits:
      if ts.labels[s].shape[1] != tasksets[0].labels[s].shape[1]:
        raise ValueError(f"cannot concat TaskSets over different data: split {s!r} has "
                         f"{tasksets[0].labels[s].shape[1]} vs {ts.labels[s].shape[1]} "
                         "examples")
  labels = {s: np.concatenate([ts.labels[s] for ts in tasksets]) for s in splits}
  names = tuple(n for ts in tasksets for n in ts.names)
  return TaskSet(names, max(ts.num_classes for ts in tasksets), labels)


def _check_classes(ds: Dataset, classes: Sequence[int]):
  for c in classes:
    if not isinstance(c, (int, np.integer)) or not 0 <= c < ds.num_classes:
      raise ValueError(f"class id {c!r} is not in [0, {ds.num_classes}) of dataset "
                       f"{ds.name!r}")
