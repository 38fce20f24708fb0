"""When a zoo run evaluates, saves member checkpoints and saves its training state."""
import dataclasses
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class Schedule:
  steps_per_epoch: int
  total_steps: int
  save_epochs: frozenset        # member weights written to the zoo
  eval_epochs: frozenset        # population metrics logged (includes save epochs)
  checkpoint_epochs: frozenset  # training state saved for resume
  steps_per_call: int           # steps per jitted lax.scan call

  @classmethod
  def build(cls, *, steps_per_epoch: int, max_epoch: int, save_epochs: Sequence[int],
            member_epochs: Sequence[int], eval_every: int = 0, checkpoint_every: int = 1,
            steps_per_call: int = 0) -> "Schedule":
    epochs = range(max_epoch + 1)
    bad = [e for e in save_epochs if e < 0 or e > max_epoch]
    if bad:
      raise ValueError(f"save_epochs {bad} outside [0, {max_epoch}] (the longest member)")
    saves = frozenset(int(e) for e in (*save_epochs, *member_epochs))
    evals = saves | frozenset(e for e in epochs if eval_every and e and e % eval_every == 0)
    ckpts = frozenset(e for e in epochs if checkpoint_every and e and e % checkpoint_every == 0)
    return cls(steps_per_epoch=steps_per_epoch, total_steps=max_epoch * steps_per_epoch,
               save_epochs=saves, eval_epochs=evals, checkpoint_epochs=ckpts,
               steps_per_call=steps_per_call or steps_per_epoch)

  def next_chunk(self, step: int) -> int:
    """Number of steps to run from `step` up to the next boundary or call limit."""
    stops = [e * self.steps_per_epoch for e in self.eval_epochs | self.checkpoint_epochs]
    stops = [s for s in stops if s > step] + [self.total_steps]
    return min(min(stops), step + self.steps_per_call) - step
