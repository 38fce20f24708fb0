"""Tests for TaskSet and the task builders against hand-written label tables."""
import numpy as np
import pytest

from jatlas.data import (Dataset, TaskSet, class_pairs, class_subsets, concat_tasks,
                         load_digits, multiclass, one_vs_rest)

Y = {"train": [0, 1, 2, 1, 0, 2, 2], "val": [1, 2], "test": [0, 0, 2, 1]}


@pytest.fixture
def ds():
  return _dataset(Y)


def _dataset(y, num_classes=3):
  parts = {}
  for s, labels in y.items():
    parts[f"x_{s}"] = np.zeros((len(labels), 2, 2, 1), np.float32)
    parts[f"y_{s}"] = np.asarray(labels, np.int32)
  return Dataset("toy", class_names=[str(c) for c in range(num_classes)], **parts)


def _check(tasks, expected):
  """expected: split -> list of per-task label rows."""
  assert set(tasks.labels) == {"train", "val", "test"}
  for s, rows in expected.items():
    assert tasks.labels[s].dtype == np.int32
    np.testing.assert_array_equal(tasks.labels[s], np.array(rows))
    np.testing.assert_array_equal(tasks.mask(s), np.array(rows) >= 0)


def test_multiclass(ds):
  tasks = multiclass(ds)
  assert tasks.names == ("multiclass",) and tasks.num_classes == 3 and len(tasks) == 1
  _check(tasks, {s: [y] for s, y in Y.items()})


def test_one_vs_rest(ds):
  tasks = one_vs_rest(ds, classes=[2, 0])
  assert tasks.names == ("one_vs_rest:2", "one_vs_rest:0")
  assert tasks.num_classes == 2
  _check(tasks, {
      "train": [[0, 0, 1, 0, 0, 1, 1], [1, 0, 0, 0, 1, 0, 0]],
      "val": [[0, 1], [0, 0]],
      "test": [[0, 0, 1, 0], [1, 1, 0, 0]],
  })
  assert one_vs_rest(ds).names == ("one_vs_rest:0", "one_vs_rest:1", "one_vs_rest:2")


def test_class_subsets(ds):
  tasks = class_subsets(ds, [(2, 0), [0, 1, 2]])
  assert tasks.names == ("subset:2-0", "subset:0-1-2")
  assert tasks.num_classes == 3
  _check(tasks, {
      "train": [[1, -1, 0, -1, 1, 0, 0], [0, 1, 2, 1, 0, 2, 2]],
      "val": [[-1, 0], [1, 2]],
      "test": [[1, 1, 0, -1], [0, 0, 2, 1]],
  })


def test_class_subsets_keep_labels(ds):
  tasks = class_subsets(ds, [(2, 0), [1, 2]], relabel=False)
  assert tasks.num_classes == 3  # the dataset's, not the largest subset's
  _check(tasks, {
      "train": [[0, -1, 2, -1, 0, 2, 2], [-1, 1, 2, 1, -1, 2, 2]],
      "val": [[-1, 2], [1, 2]],
      "test": [[0, 0, 2, -1], [-1, -1, 2, 1]],
  })


def test_class_pairs(ds):
  tasks = class_pairs(ds)
  assert tasks.names == ("pair:0-1", "pair:0-2", "pair:1-2")
  assert tasks.num_classes == 2
  _check(tasks, {
      "train": [[0, 1, -1, 1, 0, -1, -1], [0, -1, 1, -1, 0, 1, 1], [-1, 0, 1, 0, -1, 1, 1]],
      "val": [[1, -1], [-1, 1], [0, 1]],
      "test": [[0, 0, -1, 1], [0, 0, 1, -1], [-1, -1, 1, 0]],
  })
  explicit = class_pairs(ds, [(2, 1)])
  assert explicit.names == ("pair:2-1",)
  _check(explicit, {"train": [[-1, 1, 0, 1, -1, 0, 0]]})


def test_one_vs_rest_counts_on_digits():
  digits = load_digits()
  tasks = one_vs_rest(digits)
  np.testing.assert_array_equal(tasks.labels["train"].sum(axis=1), np.bincount(digits.y_train))
  assert tasks.mask("test").all()
  pairs = class_pairs(digits)
  assert len(pairs) == 45
  counts = np.bincount(digits.y_val)
  expected = [counts[a] + counts[b] for a in range(10) for b in range(a + 1, 10)]
  np.testing.assert_array_equal(pairs.mask("val").sum(axis=1), expected)


def test_concat(ds):
  tasks = concat_tasks(class_subsets(ds, [(0, 1, 2)]), one_vs_rest(ds, [1]))
  assert tasks.names == ("subset:0-1-2", "one_vs_rest:1")
  assert tasks.num_classes == 3
  _check(tasks, {"val": [[1, 2], [1, 0]]})


def test_concat_rejects_duplicates_and_other_data(ds):
  with pytest.raises(ValueError, match=r"duplicate task names \['multiclass'\]"):
    concat_tasks(multiclass(ds), multiclass(ds))
  other = _dataset({"train": [0, 1], "val": [1, 2], "test": [0, 0, 2, 1]})
  with pytest.raises(ValueError, match="split 'train' has 7 vs 2 examples"):
    concat_tasks(multiclass(ds), one_vs_rest(other))
  with pytest.raises(ValueError, match="at least one"):
    concat_tasks()


@pytest.mark.parametrize("build, message", [
    (lambda ds: one_vs_rest(ds, [3]), r"class id 3 is not in \[0, 3\)"),
    (lambda ds: one_vs_rest(ds, [-1]), "class id -1"),
    (lambda ds: class_subsets(ds, [(0, 0)]), "at least 2 distinct"),
    (lambda ds: class_subsets(ds, [(1,)]), "at least 2 distinct"),
    (lambda ds: class_subsets(ds, []), "at least one subset"),
    (lambda ds: class_subsets(ds, [(0, 1.0)]), "class id 1.0"),
    (lambda ds: class_pairs(ds, [(0, 1, 2)]), "exactly 2"),
])
def test_builders_reject_bad_classes(ds, build, message):
  with pytest.raises(ValueError, match=message):
    build(ds)


def test_taskset_validation_and_mask():
  good = {"train": np.array([[0, -1, 1]], np.int32)}
  tasks = TaskSet(["t"], 2, good)
  assert tasks.names == ("t",) and len(tasks) == 1
  np.testing.assert_array_equal(tasks.mask("train"), [[True, False, True]])
  assert repr(tasks) == "TaskSet(1 tasks, num_classes=2, train=3)"
  with pytest.raises(ValueError, match="unknown split 'test'"):
    tasks.mask("test")
  with pytest.raises(ValueError, match="int32 \\[T, N\\]"):
    TaskSet(("t",), 2, {"train": np.array([[0, 1]], np.int64)})
  with pytest.raises(ValueError, match="1 rows for 2 tasks"):
    TaskSet(("t", "u"), 2, good)
  with pytest.raises(ValueError, match=r"span \[-1, 2\], expected -1 or \[0, 2\)"):
    TaskSet(("t",), 2, {"train": np.array([[2, -1]], np.int32)})
