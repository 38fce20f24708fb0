"""configs/hypernet_digits.py: every variant validates; :paper plans the paper's zoo
(10^4 members, 1,000 per digit, 20 epochs) in waves without training anything; each
learning curve ends at the whole train pool (so that point reuses the task-ID fit)."""
import functools
import importlib.util
import os

import numpy as np
import pytest

from jatlas.config import load_config
from jatlas.zoo import schema
from jatlas.zoo.train import plan

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "hypernet_digits.py")
EXPERIMENT = os.path.join(os.path.dirname(CONFIG), "..", "experiments", "hypernet_digits.py")
VARIANTS = ["", "full", "paper", "smoke"]


@functools.cache  # the experiment module, executed once for every variant
def _experiment():
  spec = importlib.util.spec_from_file_location("hypernet_digits_experiment", EXPERIMENT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _load(variant):
  return load_config([f"--config={CONFIG}:{variant}" if variant else f"--config={CONFIG}"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_validates(variant):
  schema.validate(_load(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_learning_curve_ends_at_the_whole_train_pool(variant):
  cfg = _load(variant)
  task_R = np.repeat(np.arange(10), cfg.zoo.members // 10)
  train = _experiment().model_splits(task_R, cfg)["train"]
  per_task = np.bincount(task_R[train], minlength=10)
  assert per_task.min() == per_task.max() == max(cfg.experiment.curve_sizes)


def test_unknown_variant_lists_the_known_ones():
  with pytest.raises(SystemExit, match="unknown config variant 'papr'.*'paper'"):
    load_config([f"--config={CONFIG}:papr"])


def test_paper_plans_ten_thousand_members_in_waves(tmp_path):
  run = plan(load_config([f"--config={CONFIG}:paper", "--config.zoo.wave_size=2048"]),
             str(tmp_path))
  assert len(run.spec) == 10_000
  assert np.bincount(run.spec.task, minlength=10).tolist() == [1000] * 10
  assert run.sched.total_steps == 20 * run.sched.steps_per_epoch
  assert run.sched.save_epochs == {0, 1, 5, 20} and run.sched.checkpoint_epochs == {5, 10, 15, 20}
  # as few waves as the cap allows, evened out: ceil(10,000 / 2,048) = 5 of 2,000
  assert run.waves == [(i * 2000, (i + 1) * 2000) for i in range(5)]
  # train metrics on 360 of the training examples; training itself on all of them
  n_train = run.splits["train"].in_task.shape[1]
  assert run.eval_splits["train"].in_task.shape[1] == 360 < n_train
  assert run.eval_splits["test"] is run.splits["test"]
  assert not os.listdir(tmp_path)  # plan writes nothing
