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


def test_orders_look_like_uniform_shuffles():
  # too few swap-or-not rounds leave images near their pre-images: at n = 1,293,
  # 8 rounds give 3.5x the adjacent pairs of a uniform shuffle; the default gives ~1x
  n, k = 1293, 4000
  keys = jax.random.split(jax.random.key(0), k)
  orders_KN = np.asarray(jax.vmap(lambda key: shuffle.permute(key, jnp.arange(n), n))(keys))
  adjacent = np.mean(np.abs(np.diff(orders_KN, axis=1)) == 1) * n / 2  # 1 when uniform
  first_counts = np.bincount(orders_KN[:, 0], minlength=n)
  chi2_per_dof = ((first_counts - k / n) ** 2 / (k / n)).sum() / (n - 1)  # 1 when uniform
  assert abs(adjacent - 1) < 0.1, adjacent
  assert 0.8 < chi2_per_dof < 1.2, chi2_per_dof


def test_an_epoch_visits_the_task_examples_once():
  labels_N = np.full(50, -1)
  labels_N[[3, 7, 8, 20, 21, 22, 30, 41, 42, 49]] = 1
  examples_N = np.argsort(labels_N < 0, kind="stable")
  cfg = StepConfig(batch_size=5, steps_per_epoch=2)
  key = jax.random.key(0)
  epoch0 = np.concatenate([batch_indices(cfg, key, examples_N, 10, s, False) for s in (0, 1)])
  epoch1 = np.concatenate([batch_indices(cfg, key, examples_N, 10, s, False) for s in (2, 3)])
  assert sorted(epoch0) == sorted(epoch1) == [3, 7, 8, 20, 21, 22, 30, 41, 42, 49]
  assert list(epoch0) != list(epoch1)
