"""Population grids and training schedules."""
import numpy as np
import pytest

from jatlas.zoo import population_spec
from jatlas.zoo.schedule import Schedule


def test_grid_cycles_tasks_fastest_and_records_seeds():
  spec = population_spec(tasks=("a", "b"), members=9, seed=3, lr=(1e-3, 1e-2),
                         optimizer=("adam", "sgd"), epochs=(1, 5))
  assert list(spec.task_name) == ["a", "b"] * 4 + ["a"]
  assert list(spec.lr[:4]) == pytest.approx([1e-3, 1e-3, 1e-2, 1e-2])
  assert list(spec.optimizer[:8]) == [0] * 4 + [1] * 4
  assert list(spec.epochs) == [1] * 8 + [5]
  assert list(spec.seed) == [3_000_000 + i for i in range(9)]
  t = spec.table()
  assert list(t.columns[:3]) == ["member", "seed", "task"] and t.optimizer[5] == "sgd"
  assert (spec.parent_index == -1).all()
  spec_p = population_spec(tasks=("a",), members=5, num_parents=2)
  assert list(spec_p.parent_index) == [0, 1, 0, 1, 0]


def test_population_errors():
  with pytest.raises(ValueError, match="unknown optimizer.*lion"):
    population_spec(tasks=("a",), members=2, optimizer=("lion",))
  with pytest.raises(ValueError, match="members must be >= 1"):
    population_spec(tasks=("a",), members=0)


def test_schedule_boundaries():
  s = Schedule.build(steps_per_epoch=10, max_epoch=5, save_epochs=(0, 2),
                     member_epochs=np.array([3, 5]), eval_every=0, checkpoint_every=2,
                     steps_per_call=4)
  assert s.total_steps == 50
  assert s.save_epochs == {0, 2, 3, 5}
  assert s.checkpoint_epochs == {2, 4}
  steps, chunks = 0, []
  while steps < s.total_steps:
    chunks.append(s.next_chunk(steps))
    steps += chunks[-1]
  assert chunks == [4] * 5 + [4, 4, 2] * 3  # stops at epochs 2, 3, 4, 5 (steps 20..50)
  with pytest.raises(ValueError, match=r"save_epochs \[7\] outside \[0, 5\]"):
    Schedule.build(steps_per_epoch=10, max_epoch=5, save_epochs=(7,), member_epochs=[5])
