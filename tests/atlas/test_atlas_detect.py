"""Quantization and merge detection on planted models; distances against NumPy."""
import jax
import numpy as np
import pytest

from jatlas import merge, nets
from jatlas.atlas.distances import (cluster_models, diff_rank, invariant_embedding,
                                    layer_distance, max_abs_diff, normalised_layers,
                                    peak_distance, stack_models)
from jatlas.atlas.merges import detect_merges
from jatlas.atlas.quantized import detect_quantized, is_quantized
from jatlas.similarity import linear_cka


def model(rng, scale=1.0):
  return {"params": {"fc1": {"kernel": scale * rng.normal(size=(12, 16)).astype(np.float32),
                             "bias": rng.normal(size=(16,)).astype(np.float32)},
                     "head": {"kernel": scale * rng.normal(size=(16, 5)).astype(np.float32)}}}


def tweak(m, rng, sigma):
  return jax.tree.map(lambda w: (w + sigma * rng.normal(size=w.shape)).astype(np.float32), m)


def int8(w, axis=-1, affine=False):
  """Per-channel int8 round trip (the channel is `axis`)."""
  red = tuple(a for a in range(w.ndim) if a != axis % w.ndim)
  if affine:
    lo, hi = w.min(red, keepdims=True), w.max(red, keepdims=True)
    s = (hi - lo) / 255
    return (lo + np.round((w - lo) / s) * s).astype(np.float32)
  s = np.abs(w).max(red, keepdims=True) / 127
  return (np.clip(np.round(w / s), -127, 127) * s).astype(np.float32)


def test_layer_distance_and_rank_match_numpy():
  rng = np.random.default_rng(0)
  ms = [model(rng) for _ in range(3)] + [tweak(model(rng), rng, 1e-3)]
  t = stack_models(ms)
  d = layer_distance(t)
  names = sorted(t)
  for a in range(4):
    for b in range(4):
      want = np.mean([np.linalg.norm(t[n][a] - t[n][b]) /
                      (np.linalg.norm(t[n][a]) + np.linalg.norm(t[n][b])) for n in names])
      np.testing.assert_allclose(d[a, b], want, rtol=2e-4, atol=1e-6)
  # a rank-2 update of both matrices: rank 2 / min side, averaged over the two matrices
  low = stack_models([ms[0], jax.tree.map(lambda w: w + (
      rng.normal(size=(w.shape[0], 2)) @ rng.normal(size=(2, w.shape[-1]))).astype(np.float32)
      if w.ndim == 2 else w, ms[0])])
  np.testing.assert_allclose(diff_rank(low, [(0, 1)]), [(2 / 12 + 2 / 5) / 2])


@pytest.mark.parametrize("top", [1, 3])
def test_peak_distance_matches_numpy(top):
  rng = np.random.default_rng(1)
  ms = [model(rng) for _ in range(3)] + [tweak(model(rng), rng, 1e-2) for _ in range(2)]
  t = stack_models(ms)
  names = ["params/fc1/kernel", "params/head/kernel"]
  d = peak_distance(t, names=names, top=top)
  per = []
  for n in names:
    x = t[n].reshape(5, -1).astype(np.float64)
    diff = np.abs(x[:, None] - x[None])
    p = np.sort(diff, -1)[..., -top:].mean(-1)
    per.append(p / np.median(p[~np.eye(5, dtype=bool)]))
  np.testing.assert_allclose(d, np.mean(per, 0), rtol=1e-5, atol=1e-7)
  if top == 1:  # MoTHer's max-abs difference, up to each layer's scale
    raw = max_abs_diff(t, np.arange(5))[[1, 2]]  # weight_names order: fc1/bias first
    np.testing.assert_allclose(
        d, np.mean([r / np.median(r[~np.eye(5, dtype=bool)]) for r in raw], 0), rtol=1e-5)


def test_invariant_embedding_is_debiased_cka_and_ignores_permutations():
  net = nets.MLP(hidden=(16,), num_classes=5)
  v = net.init(jax.random.key(0), np.zeros((1, 12)))
  v = jax.tree.map(np.asarray, v)
  spec = nets.permutation_spec(net, v)
  other = jax.tree.map(np.asarray, net.init(jax.random.key(1), np.zeros((1, 12))))
  moved = nets.permute(v, spec, nets.random_permutation(spec, jax.random.key(2), flip=False,
                                                          rescale=False))
  t = stack_models([v, moved, other])
  e = invariant_embedding(t, spec)
  np.testing.assert_allclose(e[0], e[1], atol=1e-5)  # relabelled units: same point
  k1, k2 = t["params/fc1/kernel"], t["params/head/kernel"]
  cka1 = linear_cka(k1[0], k1[2], debiased=True)               # rows: the 12 inputs
  cka2 = linear_cka(k2[0].T, k2[2].T, debiased=True)           # rows: the 5 logits
  np.testing.assert_allclose(np.sum((e[0] - e[2]) ** 2), 2 - (cka1 + cka2), atol=1e-4)


def test_cluster_models_finds_trees_with_and_without_spec():
  rng = np.random.default_rng(1)
  roots = [model(rng) for _ in range(3)]
  ms, truth = [], []
  for r, root in enumerate(roots):
    cur = root
    for _ in range(6):
      ms.append(cur)
      truth.append(r)
      cur = tweak(cur, rng, 0.05)
  labels = cluster_models(stack_models(ms))
  assert len(set(labels)) == 3
  assert all(len(set(labels[np.array(truth) == r])) == 1 for r in range(3))
  assert len(set(cluster_models(stack_models(ms), n_trees=2))) == 2


@pytest.mark.parametrize("axis,affine", [(-1, False), (0, False), (-1, True)])
def test_int8_models_are_detected(axis, affine):
  rng = np.random.default_rng(2)
  m = model(rng)
  q = jax.tree.map(lambda w: int8(w, axis, affine) if w.ndim == 2 else w, m)
  flag, score = is_quantized(q)
  assert flag and score > 0.95
  flag, score = is_quantized(m)
  assert not flag and score < 0.5
  # bf16-rounded weights are a fine float grid, not int8
  bf = jax.tree.map(lambda w: np.asarray(jax.numpy.asarray(w).astype("bfloat16"), np.float32), m)
  assert not is_quantized(bf)[0]
  flags, _ = detect_quantized(stack_models([m, q, tweak(m, rng, 0.01)]))
  np.testing.assert_array_equal(flags, [False, True, False])


def test_planted_merges_found_and_fine_tunes_are_not_merges():
  rng = np.random.default_rng(3)
  base = model(rng)
  fts = [tweak(base, rng, 0.1) for _ in range(5)]
  kids = [tweak(f, rng, 0.05) for f in fts[:2]]  # plain fine-tunes of fine-tunes
  ms = [base, *fts, *kids]
  planted = {
      len(ms): {1, 2},
      len(ms) + 1: {2, 3, 4},
      len(ms) + 2: {3, 5},
      len(ms) + 3: {1, 4}}
  ms += [merge.average([fts[0], fts[1]]), merge.average([fts[1], fts[2], fts[3]]),
         merge.slerp(fts[2], fts[4], 0.4), merge.ties(base, [fts[0], fts[3]], density=0.2)]
  t = stack_models([jax.tree.map(np.asarray, m) for m in ms])
  found = detect_merges(normalised_layers(t, np.arange(len(ms))))
  assert set(found) == set(planted), found
  for node, parents in planted.items():
    assert parents <= set(found[node]["parents"]), (node, found[node])
    assert 0 < found[node]["confidence"] <= 1
  assert found[len(ms) - 1]["test"] == "selection"
  assert set(found[len(ms) - 1]["parents"]) <= {0, 1, 4}  # TIES: the base copies too


def test_ties_of_two_fine_tunes_sharing_a_drift_is_a_merge():
  """Siblings that moved the same way keep the same top coordinates, which TIES
  averages (nobody's value): the selection test must still find both parents."""
  rng = np.random.default_rng(5)
  base = model(rng)
  drift = tweak(jax.tree.map(np.zeros_like, base), rng, 0.1)
  fts = [jax.tree.map(lambda b, s, n: (b + s + n).astype(np.float32), base, drift,
                      tweak(jax.tree.map(np.zeros_like, base), rng, 0.05)) for _ in range(6)]
  ms = [base, *fts, jax.tree.map(np.asarray, merge.ties(base, [fts[0], fts[1]], density=0.3))]
  t = stack_models(ms)
  found = detect_merges(normalised_layers(t, np.arange(len(ms))))
  assert set(found) == {7}, found
  assert {1, 2} <= set(found[7]["parents"]) <= {0, 1, 2}


def test_merges_of_unrelated_random_models():
  rng = np.random.default_rng(4)
  ms = [model(rng) for _ in range(6)]
  ms += [merge.slerp(ms[0], ms[1], 0.5), merge.average([ms[2], ms[3], ms[4]])]
  t = stack_models([jax.tree.map(np.asarray, m) for m in ms])
  found = detect_merges(normalised_layers(t, np.arange(len(ms))))
  assert set(found) == {6, 7}
  assert set(found[6]["parents"]) == {0, 1} and set(found[7]["parents"]) == {2, 3, 4}
