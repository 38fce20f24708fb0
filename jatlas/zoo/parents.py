"""Parents of a fine-tuning population: checkpoints of an existing zoo.

Member i of a fine-tuning run starts from parent checkpoint i % P; the parent's
row id and zoo are recorded in the child's members table (lineage for the atlas).
"""
import dataclasses

import numpy as np

from jatlas.zoo import sharding, store


@dataclasses.dataclass(frozen=True)
class Parents:
  dir: str
  zoo: store.Zoo
  rows: np.ndarray     # table rows of the parent checkpoints, in member order
  row_ids: list

  def stacked(self, parent_row_M, m_pad: int, mesh):
    """(params, batch_stats) with a leading member axis, sharded over the mesh."""
    idx = self.rows[np.concatenate([parent_row_M, np.repeat(parent_row_M[:1],
                                                            m_pad - len(parent_row_M))])]
    flat = {n: self.zoo.stacked(n, idx) for n in self.zoo.names}
    variables = store.unflatten_variables(flat)
    return sharding.put_members((variables["params"], variables.get("batch_stats", {})), mesh)


def load_parents(parent_dir: str, epoch: int = -1) -> Parents | None:
  """Final (epoch=-1) or epoch-`epoch` healthy checkpoints of the zoo at `parent_dir`."""
  if not parent_dir:
    return None
  zoo = store.Zoo.open(parent_dir)
  t = zoo.table
  pick = (t["final"] if epoch == -1 else t["epoch"] == epoch) & (t["status"] == "ok")
  rows = np.flatnonzero(pick.to_numpy())
  if not len(rows):
    raise ValueError(f"parent zoo {parent_dir} has no healthy checkpoint at "
                     f"{'the final epoch' if epoch == -1 else f'epoch {epoch}'}")
  return Parents(dir=zoo.dir, zoo=zoo, rows=rows, row_ids=t["id"].to_numpy()[rows].tolist())
