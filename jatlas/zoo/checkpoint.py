"""Training-state checkpoints (orbax) so an interrupted zoo run resumes.

The state of the whole population (params, optimizer states, alive masks) is
saved as one sharded pytree, with a small JSON side item (step, metrics rows
of the epochs already written). Only the latest checkpoint is kept.
"""
import os

import jax
import orbax.checkpoint as ocp


class TrainCheckpoints:
  """Usage: ckpt = TrainCheckpoints(dir); ckpt.save(step, states, meta);
  states, meta = ckpt.restore(abstract_states)."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)  # orbax needs absolute paths
    self._mgr = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def save(self, step: int, states, meta: dict) -> None:
    self._mgr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(states), meta=ocp.args.JsonSave(meta)))
    self._mgr.wait_until_finished()

  def restore(self, abstract_states):
    """abstract_states: pytree of jax.ShapeDtypeStruct with the target shardings."""
    step = self._mgr.latest_step()
    out = self._mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_states), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def close(self) -> None:
    self._mgr.close()


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of a live pytree, the restore target."""
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
