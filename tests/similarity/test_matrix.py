"""Layer x layer and population matrices from the nets' taps (a small LeNet-5)."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jatlas import nets
from jatlas import similarity as sim

NET = nets.LeNet5(num_classes=10)
X = jax.random.normal(jax.random.key(0), (24, 32, 32, 1))


def variables(seed):
  return NET.init(jax.random.key(seed), X[:1])


def test_tap_features_reduce_is_explicit_for_maps():
  f = sim.tap_features(NET, variables(0), X, reduce="mean", taps=["conv2", "fc1"])
  assert {k: v.shape for k, v in f.items()} == {"conv2": (24, 16), "fc1": (24, 84)}
  flat = sim.tap_features(NET, variables(0), X, reduce="flatten", taps=["conv2"])
  assert flat["conv2"].shape == (24, 12 * 12 * 16)
  with pytest.raises(ValueError, match="conv2.*feature map; pass reduce="):
    sim.tap_features(NET, variables(0), X, taps=["conv2"])
  with pytest.raises(KeyError, match="conv9"):
    sim.tap_features(NET, variables(0), X, reduce="mean", taps=["conv9"])


def test_layer_matrix_is_each_pair_metric_and_self_diagonal_is_one():
  fa = sim.tap_features(NET, variables(0), X, reduce="mean")
  fb = sim.tap_features(NET, variables(1), X, reduce="mean", taps=["conv1", "fc1"])
  m, rows, cols = sim.layer_matrix(fa, fb)
  assert m.shape == (len(fa), 2) and rows == list(fa) and cols == ["conv1", "fc1"]
  assert float(m[rows.index("fc1"), 1]) == pytest.approx(
      float(sim.linear_cka(fa["fc1"], fb["fc1"])), abs=1e-6)
  self_m, _, _ = sim.layer_matrix(fa, metric=partial(sim.linear_cka, debiased=True))
  np.testing.assert_allclose(np.diag(self_m), 1.0, atol=1e-5)
  np.testing.assert_allclose(self_m, self_m.T, atol=1e-5)


def test_population_matrix_equals_pairwise_and_a_permuted_copy_is_identical():
  v0 = variables(0)
  spec = nets.permutation_spec(NET, v0)
  moved = nets.permute(v0, spec, nets.random_permutation(spec, jax.random.key(7)))
  members = [v0, variables(1), moved]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
  m = np.asarray(sim.population_matrix(NET, stacked, X, tap="fc1", batch=2))
  f = [sim.tap_features(NET, v, X, taps=["fc1"])["fc1"] for v in members]
  for i in range(3):
    for j in range(3):
      assert m[i, j] == pytest.approx(float(sim.linear_cka(f[i], f[j])), abs=1e-5)
  # hidden units permuted: the same function, so CKA 1 at every tap
  assert m[0, 2] == pytest.approx(1.0, abs=1e-5) and m[0, 1] < 0.999
