"""Model trees: Ward clustering, nearest-centroid routing and tree experts on synthetic zoos."""
import numpy as np
import pytest
from scipy.cluster import hierarchy

from jatlas.weights import make_encoder
from jatlas.weights.trees import (Router, TreeExperts, cluster_trees, flat_weights,
                                  largest_gap_cut, matched_accuracy)


def synthetic_zoo(n_trees=3, per_tree=20, spread=3.0, noise=1.0, seed=0):
  """A dict W of two tensors: each tree is a random base plus per-child deltas
  (rows shuffled) -> (W, trees_R, delta_RP)."""
  rng = np.random.default_rng(seed)
  base_TP = spread * rng.normal(size=(n_trees, 16)) * 4
  trees_R = rng.permutation(np.repeat(np.arange(n_trees), per_tree))
  delta_RP = noise * rng.normal(size=(len(trees_R), 16))
  w_RP = (base_TP[trees_R] + delta_RP).astype(np.float32)
  W = {"params/fc/kernel": w_RP[:, :12].reshape(-1, 4, 3), "params/fc/bias": w_RP[:, 12:]}
  return W, trees_R, delta_RP


def test_flat_weights_concatenates_in_name_order_or_reads_one_layer():
  W, _, _ = synthetic_zoo(per_tree=2)
  w_RP = flat_weights(W)
  np.testing.assert_array_equal(w_RP[:, :4], W["params/fc/bias"])  # "bias" < "kernel"
  np.testing.assert_array_equal(w_RP[:, 4:], W["params/fc/kernel"].reshape(6, 12))
  assert flat_weights(W, "params/fc/kernel").shape == (6, 12)


def test_cluster_trees_recovers_three_separated_trees():
  W, trees_R, _ = synthetic_zoo()
  labels_R = cluster_trees(W)  # default: cut at the largest gap
  assert labels_R.max() + 1 == 3 and labels_R[0] == 0  # numbered by first model
  assert matched_accuracy(labels_R, trees_R) == 1.0
  np.testing.assert_array_equal(cluster_trees(W, n_trees=3), labels_R)
  assert cluster_trees(W, n_trees=1).max() == 0


def test_cluster_trees_threshold_cuts_at_that_merge_height():
  W, trees_R, _ = synthetic_zoo()
  h_L = hierarchy.linkage(flat_weights(W).astype(np.float64), "ward")[:, 2]
  between = (h_L[-3] + h_L[-2]) / 2  # above every within-tree merge, below the last two
  assert matched_accuracy(cluster_trees(W, threshold=between), trees_R) == 1.0
  assert cluster_trees(W, threshold=h_L[-1] + 1).max() == 0
  with pytest.raises(ValueError, match="not both"):
    cluster_trees(W, n_trees=3, threshold=between)
  with pytest.raises(ValueError, match="n_trees=61"):
    cluster_trees(W, n_trees=61)


def test_largest_gap_cut_one_blob_is_one_tree_and_families_keep_their_trees():
  rng = np.random.default_rng(1)
  blob = rng.normal(size=(40, 50))
  assert largest_gap_cut(hierarchy.linkage(blob, "ward")[:, 2]) == 1
  # two families 100x apart, two trees 10x apart in each, children at unit noise
  fam_FP = 100 * rng.normal(size=(2, 50))
  base_TP = fam_FP[[0, 0, 1, 1]] + 10 * rng.normal(size=(4, 50))
  w_RP = np.repeat(base_TP, 15, 0) + rng.normal(size=(60, 50))
  h_L = hierarchy.linkage(w_RP, "ward")[:, 2]
  assert len(h_L) - int(np.argmax(np.diff(h_L))) == 2  # an absolute gap finds the families
  assert largest_gap_cut(h_L) == 4                      # the ratio finds the trees
  assert largest_gap_cut(h_L[:1]) == 1


def test_router_routes_held_out_children_to_their_named_tree():
  W, trees_R, _ = synthetic_zoo(per_tree=30)
  names_R = np.asarray([10, 20, 30])[trees_R]  # any labels: route returns them
  fit, held = np.arange(45), np.arange(45, 90)
  take = lambda idx: {k: v[idx] for k, v in W.items()}
  router = Router().fit(take(fit), names_R[fit])
  np.testing.assert_array_equal(router.route(take(held)), names_R[held])
  assert router.accuracy(take(held), trees_R[held]) == 1.0
  assert router.distances(take(held)).shape == (45, 3)
  one_layer = Router(layer="params/fc/kernel").fit(take(fit), names_R[fit])
  np.testing.assert_array_equal(one_layer.route(take(held)), names_R[held])
  with pytest.raises(ValueError, match="12 weights per model.*16"):
    router.route(W["params/fc/kernel"])
  with pytest.raises(ValueError, match=r"labels must be \[R=45\]"):
    Router().fit(take(fit), names_R)


def test_matched_accuracy_ignores_label_names_and_counts_unmatched_as_wrong():
  trees_R = np.asarray([0, 0, 1, 1, 2, 2])
  assert matched_accuracy([5, 5, 3, 3, 9, 9], trees_R) == 1.0
  assert matched_accuracy([5, 5, 3, 3, 3, 9], trees_R) == pytest.approx(5 / 6)
  assert matched_accuracy([0, 0, 0, 0, 0, 0], trees_R) == pytest.approx(2 / 6)  # one match
  with pytest.raises(ValueError, match="must match"):
    matched_accuracy([0, 1], trees_R)


def planted(n_trees=3, per_tree=100, labels=3, seed=0):
  """One layer w_RP (a bare array) whose children's labels are the signs of their delta
  along their tree's own directions -> (w_RP, trees_R, y_RK)."""
  W, trees_R, delta_RP = synthetic_zoo(n_trees, per_tree, seed=seed)
  d_TPK = np.random.default_rng(seed + 1).normal(size=(n_trees, 16, labels))
  y_RK = (np.einsum("rp,rpk->rk", delta_RP, d_TPK[trees_R]) > 0).astype(np.float32)
  return flat_weights(W), trees_R, y_RK


def test_tree_experts_route_correctly_and_beat_one_mixed_encoder():
  W, trees_R, y_RK = planted()
  take = lambda idx: W[idx]
  tr, va, te = np.arange(180), np.arange(180, 240), np.arange(240, 300)
  kw = dict(epochs=60, eval_every=10, patience=None, lr=1e-2)
  experts = TreeExperts("dense", **kw).fit(take(tr), y_RK[tr], task="multilabel",
                                           val=(take(va), y_RK[va]))
  mixed = make_encoder("dense", **kw).fit(take(tr), y_RK[tr], task="multilabel",
                                         val=(take(va), y_RK[va]))
  assert experts.n_trees_ == 3
  assert experts.routing_accuracy(take(te), trees_R[te]) == 1.0
  ours, theirs = experts.score(take(te), y_RK[te]), mixed.score(take(te), y_RK[te])
  # a shared linear read-out can align with each tree's direction only at cos ~ 1/sqrt(3)
  # (measured: experts 0.81, mixed 0.54)
  assert ours > 0.75 and ours > theirs + 0.15, (ours, theirs)
  assert experts.predict(take(te)).shape == (60, 3)
  assert set(experts.evaluate(take(te), y_RK[te])) == {"elementwise_accuracy", "exact_match",
                                                        "mAP"}


def test_tree_experts_multiclass_maps_each_experts_classes_and_takes_known_trees():
  W, trees_R, y_RK = planted(n_trees=2, per_tree=60, labels=1, seed=3)
  y_R = 2 * trees_R + y_RK[:, 0].astype(int)  # tree 0 has classes {0, 1}, tree 1 {2, 3}
  take = lambda idx: W[idx]
  tr, te = np.arange(90), np.arange(90, 120)
  experts = TreeExperts("dense", epochs=60, eval_every=10, patience=None, lr=1e-2).fit(
      take(tr), y_R[tr], task="multiclass", trees=trees_R[tr] + 7)
  np.testing.assert_array_equal(experts.classes_, [0, 1, 2, 3])
  np.testing.assert_array_equal(experts.route(take(te)), trees_R[te] + 7)
  logits_RK = experts.decision_function(take(te))
  assert logits_RK.shape == (30, 4)
  assert np.all(np.isneginf(logits_RK[trees_R[te] == 0][:, 2:]))  # classes tree 0 never saw
  assert np.all(np.isneginf(logits_RK[trees_R[te] == 1][:, :2]))
  pred_R = experts.predict(take(te))
  np.testing.assert_array_equal(pred_R // 2, trees_R[te])
  assert experts.score(take(te), y_R[te]) > 0.7  # measured 0.80; chance 0.5 once routed


def test_tree_experts_reject_bad_input_with_the_shape_expected():
  with pytest.raises(KeyError, match="unknown encoder 'probx'"):
    TreeExperts("probx")
  with pytest.raises(TypeError, match="unknown argument"):
    TreeExperts("dense", n_probes=3)
  W, trees_R, y_RK = planted(per_tree=4)
  with pytest.raises(RuntimeError, match="not fitted"):
    TreeExperts("dense").predict(W)
  with pytest.raises(ValueError, match=r"trees must be \[R=12\]"):
    TreeExperts("dense").fit(W, y_RK, task="multilabel", trees=trees_R[:5])
  with pytest.raises(ValueError, match="12 models but y has 5"):
    TreeExperts("dense").fit(W, y_RK[:5], task="multilabel")
