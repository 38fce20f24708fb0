"""Training-state checkpoints (orbax) so an interrupted zoo run resumes.

The training state of a wave of members is saved as one sharded pytree, with a
small JSON side item (wave, step, metrics rows of the epochs already written).
Only the latest checkpoint is kept. What the pytree holds is the caller's choice
(`jatlas.zoo.train` leaves out params that a shard written at the same step holds).
"""
import os

import jax
import orbax.checkpoint as ocp


class TrainCheckpoints:
  """Usage: ckpt = TrainCheckpoints(dir); ckpt.save(step, tree, meta);
  meta = ckpt.restore_meta(); tree, meta = ckpt.restore(abstract_tree)."""

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

  def restore_meta(self) -> dict:
    step = self._mgr.latest_step()
    return self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def step_bytes(self, step: int) -> int:
    """Bytes on disk of checkpoint `step`."""
    root = os.path.join(self.directory, str(step))
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)

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
