"""Tests for with_label_noise."""
import numpy as np
import pytest

from jatlas.data import (Dataset, class_subsets, concat_tasks, multiclass, one_vs_rest,
                         with_label_noise)

RATES = (0.0, 0.1, 0.35, 1.0)


@pytest.fixture(scope="module")
def ds():
  rng = np.random.default_rng(0)
  sizes = {"train": 3000, "val": 200, "test": 300}
  parts = {}
  for s, n in sizes.items():
    parts[f"x_{s}"] = np.zeros((n, 1, 1, 1), np.float32)
    parts[f"y_{s}"] = rng.integers(0, 5, n).astype(np.int32)
  return Dataset("toy", class_names=list("abcde"), **parts)


@pytest.fixture(scope="module")
def tasks(ds):
  return concat_tasks(one_vs_rest(ds, [0, 3]), class_subsets(ds, [(4, 1, 2)]), multiclass(ds))


@pytest.fixture(scope="module")
def noisy(tasks):
  return with_label_noise(tasks, RATES, seed=0)


def test_names_and_layout(tasks, noisy):
  assert len(noisy) == len(tasks) * len(RATES)
  assert noisy.names[:4] == ("one_vs_rest:0+noise0", "one_vs_rest:0+noise0.1",
                             "one_vs_rest:0+noise0.35", "one_vs_rest:0+noise1")
  assert noisy.names[-1] == "multiclass+noise1"
  assert noisy.num_classes == tasks.num_classes == 5


def test_rate_honoured_on_train_only(tasks, noisy):
  task_classes = [2, 2, 3, 5]
  for t, k in enumerate(task_classes):
    for r, rate in enumerate(RATES):
      row = t * len(RATES) + r
      clean, dirty = tasks.labels["train"][t], noisy.labels["train"][row]
      member = clean >= 0
      np.testing.assert_array_equal(dirty >= 0, member)  # membership unchanged
      flipped = dirty[member] != clean[member]
      # Exactly round(rate * M) labels changed, each to a different valid class.
      assert flipped.sum() == round(rate * member.sum())
      assert abs(flipped.mean() - rate) <= 1 / member.sum()
      assert dirty[member].min() >= 0 and dirty[member].max() < k
      for s in ("val", "test"):
        np.testing.assert_array_equal(noisy.labels[s][row], tasks.labels[s][t])


def test_binary_full_noise_inverts(tasks, noisy):
  np.testing.assert_array_equal(noisy.labels["train"][3], 1 - tasks.labels["train"][0])


def test_new_class_is_uniform_over_the_others(tasks, noisy):
  clean, dirty = tasks.labels["train"][3], noisy.labels["train"][15]  # multiclass, rate 1
  offsets = (dirty - clean) % 5
  counts = np.bincount(offsets, minlength=5)
  assert counts[0] == 0
  # 3000 draws over 4 offsets: expected 750 each, sd ~24.
  assert np.all(np.abs(counts[1:] - 750) < 100), counts


def test_deterministic_and_independent(tasks, noisy):
  again = with_label_noise(tasks, RATES, seed=0)
  other = with_label_noise(tasks, RATES, seed=1)
  np.testing.assert_array_equal(again.labels["train"], noisy.labels["train"])
  assert not np.array_equal(other.labels["train"][1], noisy.labels["train"][1])
  # Two tasks with identical labels still get different corruptions.
  same = concat_tasks(multiclass(ds := _tiny()), class_subsets(ds, [(0, 1, 2, 3, 4)]))
  twice = with_label_noise(same, [0.5])
  assert not np.array_equal(twice.labels["train"][0], twice.labels["train"][1])


def _tiny():
  y = np.arange(100, dtype=np.int32) % 5
  x = np.zeros((100, 1, 1, 1), np.float32)
  return Dataset("tiny", x, y, x[:0], y[:0], x[:0], y[:0], list("abcde"))


def test_input_not_mutated(tasks):
  before = {s: y.copy() for s, y in tasks.labels.items()}
  with_label_noise(tasks, [0.5], seed=3)
  for s, y in tasks.labels.items():
    np.testing.assert_array_equal(y, before[s])


@pytest.mark.parametrize("rates, message", [([1.5], r"in \[0, 1\]"), ([-0.1], r"in \[0, 1\]"),
                                            ([], "at least one rate")])
def test_rejects_bad_rates(tasks, rates, message):
  with pytest.raises(ValueError, match=message):
    with_label_noise(tasks, rates)
