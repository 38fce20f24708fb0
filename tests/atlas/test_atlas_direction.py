"""Direction rules fitted on synthetic parent/child pairs, both signs; MoTHer baseline."""
import numpy as np
import pytest
from scipy import stats

from jatlas.atlas.direction import (KURTOSIS_SUM, fit_direction, model_features, mother_rule,
                                    tree_consistent_rule)
from jatlas.atlas.distances import stack_models


def pairs(rng, n, sign):
  """Features [n, 3]: column 0 moves by sign * 1 from parent to child (plus noise)."""
  fp = rng.normal(size=(n, 3))
  fc = fp + rng.normal(scale=0.5, size=(n, 3))
  fc[:, 0] = fp[:, 0] + sign * (1 + 0.3 * rng.normal(size=n))
  return fp, fc


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fitted_rule_learns_either_sign(sign):
  rng = np.random.default_rng(0)
  rule = fit_direction(*pairs(rng, 200, sign))
  fp, fc = pairs(rng, 200, sign)  # held out
  p = rule.prob_parent(fp, fc)
  assert np.mean(p > 0.5) > 0.95
  np.testing.assert_allclose(rule.prob_parent(fc, fp), 1 - p, atol=1e-12)  # antisymmetric
  assert np.sign(rule.w_F[0]) == sign
  pw = rule.pairwise(np.concatenate([fp[:3], fc[:3]]))
  np.testing.assert_allclose(pw[0, 3], p[0])


def test_model_features_and_mother_rule_on_weights():
  # children = parent + Gaussian noise: heavy-tailed (t-distributed) parents lose kurtosis,
  # so MoTHer's rule holds; Gaussian parents scaled up gain RMS, which only a fit learns
  rng = np.random.default_rng(1)
  parents = [{"w": rng.standard_t(3, size=(20, 10)).astype(np.float32)} for _ in range(40)]
  children = [{"w": (p["w"] + rng.normal(size=(20, 10))).astype(np.float32)} for p in parents]
  f, names = model_features(stack_models(parents + children))
  assert names[0] == KURTOSIS_SUM and len(names) == 4
  np.testing.assert_allclose(f[:, 1], [stats.kurtosis(m["w"].ravel()) for m in parents + children],
                             rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(f[:, 2], np.log(np.sqrt(np.mean(np.stack(
      [m["w"] for m in parents + children]) ** 2, (1, 2)))), rtol=1e-5)
  fp, fc = f[:40], f[40:]
  base = mother_rule(names)
  assert np.mean(base.prob_parent(fp, fc) == 1) > 0.9
  assert set(np.unique(base.prob_parent(fp, fc))) <= {0.0, 0.5, 1.0}
  # the reverse trend: children shrunk towards Gaussian -> kurtosis *rises* parent to child
  g_par = [{"w": rng.normal(size=(20, 10)).astype(np.float32)} for _ in range(40)]
  g_kid = [{"w": (p["w"] * (1 + 2 * (np.abs(p["w"]) > 1.5))).astype(np.float32)} for p in g_par]
  g, _ = model_features(stack_models(g_par + g_kid))
  assert np.mean(base.prob_parent(g[:40], g[40:]) == 1) < 0.1   # MoTHer fails here
  rule = fit_direction(g[:20], g[40:60])
  assert np.mean(rule.prob_parent(g[20:40], g[60:]) > 0.5) > 0.95  # the fit does not


def test_tree_consistent_rule_orients_a_fan():
  # root 0 with 6 children; feature 0 rises root -> child: the backwards reading would give
  # the root six parents, so the rule picks the rising sign
  rng = np.random.default_rng(2)
  f = rng.normal(scale=0.1, size=(7, 2))
  f[0, 0], f[1:, 0] = 0.0, 1.0 + 0.1 * rng.normal(size=6)
  names = [KURTOSIS_SUM, "x"]
  edges = np.array([[c, 0] for c in range(1, 7)])  # undirected, listed child-first
  rule = tree_consistent_rule(f, edges, names)
  assert rule.source == "tree_consistent"
  assert (rule.prob_parent(f[0], f[1:]) > 0.5).all()


def test_bad_pairs_are_named():
  with pytest.raises(ValueError, match=r"features_parent_PF \(3, 2\)"):
    fit_direction(np.zeros((3, 2)), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="kurtosis_sum"):
    mother_rule(["a", "b"])
