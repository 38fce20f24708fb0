"""Keyed permutations: bijective, key-dependent, and one epoch visits each example once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jatlas.zoo import shuffle
from jatlas.zoo.step import StepConfig, batch_indices


@pytest.mark.parametrize("n", [1, 2, 3, 17, 64, 1000, 1293])
def test_permute_is_a_bijection(n):
  perm = np.asarray(shuffle.permute(jax.random.key(n), jnp.arange(n), n))
  np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_different_keys_give_different_orders():
  a = np.asarray(shuffle.permute(jax.random.key(0), jnp.arange(500), 500))
  b = np.asarray(shuffle.permute(jax.random.key(1), jnp.arange(500), 500))
  assert (a != b).mean() > 0.9
  assert abs(np.corrcoef(a, np.arange(500))[0, 1]) < 0.2  # not close to the identity


def test_an_epoch_visits_the_task_examples_once():
  labels_N = np.full(50, -1)
  labels_N[[3, 7, 8, 20, 21, 22, 30, 41, 42, 49]] = 1
  examples_N = np.argsort(labels_N < 0, kind="stable")
  cfg = StepConfig(apply_fn=None, optimizers=("adam",), batch_size=5, steps_per_epoch=2,
                   has_batch_stats=False, full_tasks=False)
  key = jax.random.key(0)
  epoch0 = np.concatenate([batch_indices(cfg, key, examples_N, 10, s) for s in (0, 1)])
  epoch1 = np.concatenate([batch_indices(cfg, key, examples_N, 10, s) for s in (2, 3)])
  assert sorted(epoch0) == sorted(epoch1) == [3, 7, 8, 20, 21, 22, 30, 41, 42, 49]
  assert list(epoch0) != list(epoch1)
