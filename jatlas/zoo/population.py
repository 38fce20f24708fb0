"""Who the members of a population are: one row of hyper-parameters per member.

A population is a grid of hyper-parameter values crossed with seeds; member i
takes grid point i % len(grid) (task varying fastest, then lr, weight decay,
optimizer, init scale, epochs), so `members` can be any size and every grid
point gets (almost) the same number of seeds. Seeds are recorded per member:
the zoo is reproducible member by member.

Usage:
  spec = population_spec(tasks=("one_vs_rest:0", "one_vs_rest:1"), members=8,
                         lr=(1e-3, 3e-3), seed=0)
  spec.table()  # pandas, one row per member
"""
import dataclasses
import itertools
from typing import Sequence

import numpy as np
import pandas as pd

OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclasses.dataclass(frozen=True)
class PopulationSpec:
  """Per-member hyper-parameters as NumPy arrays of length M."""
  seed: np.ndarray          # int64 (M,)
  task: np.ndarray          # int32 (M,) index into the task set
  task_name: np.ndarray     # object (M,)
  lr: np.ndarray            # float32 (M,)
  weight_decay: np.ndarray  # float32 (M,)
  optimizer: np.ndarray     # int32 (M,) index into OPTIMIZERS
  init_scale: np.ndarray    # float32 (M,)
  epochs: np.ndarray        # int32 (M,) training length of each member
  parent_index: np.ndarray  # int64 (M,) index into the parents (Parents.rows), -1 = none

  def __len__(self):
    return len(self.seed)

  def table(self) -> pd.DataFrame:
    return pd.DataFrame({
        "member": np.arange(len(self)), "seed": self.seed, "task": self.task_name,
        "task_index": self.task, "lr": self.lr, "weight_decay": self.weight_decay,
        "optimizer": [OPTIMIZERS[k] for k in self.optimizer],
        "init_scale": self.init_scale, "epochs": self.epochs})

  def take(self, idx) -> "PopulationSpec":
    return PopulationSpec(**{f.name: getattr(self, f.name)[idx]
                             for f in dataclasses.fields(self)})


def population_spec(*, tasks: Sequence[str], members: int, seed: int = 0,
                    lr: Sequence[float] = (1e-3,),
                    weight_decay: Sequence[float] = (0.0,),
                    optimizer: Sequence[str] = ("adam",),
                    init_scale: Sequence[float] = (1.0,),
                    epochs: Sequence[int] = (1,),
                    num_parents: int = 0) -> PopulationSpec:
  """Crosses tasks x hyper-parameters, cycles the grid over `members` seeds."""
  unknown = [o for o in optimizer if o not in OPTIMIZERS]
  if unknown:
    raise ValueError(f"unknown optimizer(s) {unknown}; expected one of {OPTIMIZERS}")
  if members < 1:
    raise ValueError(f"members must be >= 1, got {members}")
  if min(epochs) < 1:
    raise ValueError(f"epochs must be >= 1, got {tuple(epochs)}")
  axes = (range(len(tasks)), lr, weight_decay, [OPTIMIZERS.index(o) for o in optimizer],
          init_scale, epochs)
  # task varies fastest, then lr, ...: any prefix of the members covers the tasks evenly
  grid = [point[::-1] for point in itertools.product(*axes[::-1])]
  rows = [grid[i % len(grid)] for i in range(members)]
  cols = list(zip(*rows))
  task = np.asarray(cols[0], np.int32)
  return PopulationSpec(
      seed=seed * 1_000_000 + np.arange(members, dtype=np.int64),
      task=task, task_name=np.asarray([tasks[t] for t in task], dtype=object),
      lr=np.asarray(cols[1], np.float32), weight_decay=np.asarray(cols[2], np.float32),
      optimizer=np.asarray(cols[3], np.int32), init_scale=np.asarray(cols[4], np.float32),
      epochs=np.asarray(cols[5], np.int32),
      parent_index=(np.arange(members) % num_parents if num_parents
                  else np.full(members, -1)).astype(np.int64))
