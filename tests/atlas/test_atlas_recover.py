"""Lineage recovery end to end on a planted NumPy atlas, and the MoTHer baseline."""
import time

import jax
import numpy as np
import pytest

from jatlas import nets
from jatlas.atlas import recover
from jatlas.atlas.distances import cluster_models, matrix_names, peak_distance, stack_models
from jatlas.atlas.recover import mother_baseline, recover_lineage

SHAPES = {"params/fc1/kernel": (16, 24), "params/fc1/bias": (24,),
          "params/fc2/kernel": (24, 24), "params/fc2/bias": (24,), "params/head/kernel": (24, 6),
          "params/head/bias": (6,)}


def int8(w):
  s = np.abs(w).max(0, keepdims=True) / 127
  return (np.round(w / s) * s).astype(np.float32)


def planted_atlas(seed=0, roots=3):
  """Heavy-tailed roots; a child is its parent grown by 2% plus Gaussian noise (RMS
  rises: a direction signal; kurtosis barely moves); per tree a fan of 4, a chain of depth 3 below one child, a
  fan of 3 below another, two int8 leaves and (trees 0, 1) an average of two siblings."""
  rng = np.random.default_rng(seed)
  models, ids, edges, times = [], [], [], []

  def add(name, m, t, parents=(), rel="finetune"):
    models.append(m)
    ids.append(name)
    times.append(t)
    edges.extend((p, name, rel) for p in parents)
    return m

  def child(m):
    return {k: (1.02 * w + 0.08 * np.sqrt(np.mean(w ** 2)) * rng.normal(size=w.shape)).astype(np.float32)
            for k, w in m.items()}

  for r in range(roots):
    root = add(f"r{r}", {k: rng.standard_t(4, size=s).astype(np.float32)
                         for k, s in SHAPES.items()}, 0)
    kids = [add(f"r{r}/c{i}", child(root), 1, [f"r{r}"]) for i in range(4)]
    cur, name = kids[0], f"r{r}/c0"
    for depth in range(3):
      cur = add(f"{name}/s", child(cur), 2 + depth, [name])
      name = f"{name}/s"
    for i in range(3):
      add(f"r{r}/c1/f{i}", child(kids[1]), 2, [f"r{r}/c1"])
    for who, m in ((f"r{r}/c2", kids[2]), (f"r{r}/c0/s", models[ids.index(f"r{r}/c0/s")])):
      add(f"{who}/int8", {k: int8(w) if w.ndim == 2 else w for k, w in m.items()}, 9, [who],
          "quantized")
    if r < 2:
      add(f"r{r}/merge", {k: (kids[2][k] + kids[3][k]) / 2 for k in SHAPES}, 5,
          [f"r{r}/c2", f"r{r}/c3"], "merge")
  return models, ids, edges, np.array(times, float)


def accuracy(true, got, skip=()):
  pairs = {(e["parent"], e["child"]): e["relation"] for e in got}
  want = [e for e in true if e[1] not in skip]
  placed = np.mean([(p, c) in pairs for p, c, _ in want])
  typed = np.mean([pairs.get((p, c)) == rel for p, c, rel in want])
  return placed, typed


def check_edges(got, ids):
  for e in got:
    assert set(e) == {"parent", "child", "relation", "provenance", "confidence"}
    assert e["parent"] in ids and e["child"] in ids and e["provenance"] == "recovered"
    assert e["relation"] in ("finetune", "adapter", "quantized", "merge")
    assert 0 <= e["confidence"] <= 1


def test_recover_with_documented_edges_and_with_times():
  models, ids, true, times = planted_atlas()
  rng = np.random.default_rng(5)
  documented = [true[i] for i in rng.choice(len(true), size=len(true) // 3, replace=False)
                if true[i][2] == "finetune"]
  got = recover_lineage(models, ids, known_edges=documented)
  check_edges(got, ids)
  skip = {c for _, c, _ in documented}
  assert not {e["child"] for e in got} & skip  # documented edges are not repeated
  placed, typed = accuracy(true, got, skip)
  assert placed >= 0.95 and typed >= 0.95, (placed, typed)
  placed, typed = accuracy(true, recover_lineage(models, ids, times=times))
  assert placed >= 0.95 and typed >= 0.95, (placed, typed)
  # quantized children and merges are found with their relation
  got_rel = {(e["parent"], e["child"]): e["relation"] for e in got}
  assert got_rel.get(("r0/c2", "r0/merge")) == "merge"
  assert got_rel.get(("r1/c2", "r1/c2/int8")) == "quantized"


def test_fallback_and_mother_baseline_are_reported():
  models, ids, true, _ = planted_atlas(seed=1)
  t0 = time.perf_counter()
  got = recover_lineage(models, ids)
  seconds = time.perf_counter() - t0
  placed, _ = accuracy(true, got)
  base = mother_baseline(models, ids)
  check_edges(base, ids)
  base_placed, _ = accuracy(true, base)
  print(f"\nplanted atlas ({len(ids)} nodes): jatlas without priors {placed:.3f} "
        f"({seconds:.2f} s), MoTHer {base_placed:.3f}")
  assert placed >= 0.9  # the fan test orients every tree
  assert len({e["child"] for e in base}) == len(base) == len(ids) - 3  # one root per tree
  assert base_placed < placed


def test_permuted_child_is_aligned_and_placed():
  net = nets.MLP(hidden=(24,), num_classes=6)
  rng = np.random.default_rng(2)
  spec, models, ids = None, [], []
  for r in range(2):
    v = jax.tree.map(np.asarray, net.init(jax.random.key(r), np.zeros((1, 16))))
    spec = nets.permutation_spec(net, v)
    models.append(v)
    ids.append(f"r{r}")
    for i in range(4):
      models.append(jax.tree.map(lambda w: (w + 0.05 * np.std(w) * rng.normal(size=w.shape))
                                 .astype(np.float32), v))
      ids.append(f"r{r}/c{i}")
  perm = nets.random_permutation(spec, jax.random.key(9), flip=False, rescale=False)
  models[3] = jax.tree.map(np.asarray, nets.permute(models[3], spec, perm))
  times = np.array([0, 1, 1, 1, 1] * 2, float)
  got = recover_lineage(models, ids, spec=spec, times=times, merges=False)
  pairs = {(e["parent"], e["child"]) for e in got}
  assert ("r0", "r0/c2") in pairs  # the relabelled child found its tree and parent
  assert sum((f"r{i // 5}", ids[i]) in pairs for i in range(10) if i % 5) == 8


def test_low_rank_child_far_from_its_parent_is_found_by_its_frozen_biases(monkeypatch):
  """A LoRA-style child (rank-2 kernel updates, biases frozen) moved much further than
  the fan is wide, so its nearest models are any of the fan: its own tree by distance
  and its parent not among its nearest candidates. The bit-identical biases join the
  trees and name the parent; the rank of the difference confirms it."""
  rng = np.random.default_rng(2)
  root = {k: rng.standard_t(4, size=s).astype(np.float32) for k, s in SHAPES.items()}
  fan = [{k: (1.02 * w + 0.08 * rng.normal(size=w.shape)).astype(np.float32)
          for k, w in root.items()} for _ in range(16)]
  lora = {k: (w + 3.0 * (rng.normal(size=(w.shape[0], 2)) @ rng.normal(size=(2, w.shape[1])))
              ).astype(np.float32) if w.ndim == 2 else w for k, w in fan[3].items()}
  models, ids = [root, *fan, lora], ["root", *[f"f{i}" for i in range(16)], "lora"]
  t = stack_models(models)
  monkeypatch.setattr(recover, "RANK_CANDIDATES", 1)
  assert cluster_models(t)[-1] != cluster_models(t)[0]
  d = peak_distance(t, names=matrix_names(t))
  assert np.argsort(d[-1])[1] != 4  # the nearest model is not the parent
  got = {e["child"]: e for e in recover_lineage(models, ids, quantized=False, merges=False)}
  assert got["lora"]["parent"] == "f3" and got["lora"]["relation"] == "adapter"
  assert all(e["relation"] == "finetune" for c, e in got.items() if c != "lora")
  with pytest.raises(ValueError, match="distance='cosine'.*distance_layers='some'"):
    recover_lineage(models, ids, distance="cosine", distance_layers="some")


def test_bad_inputs_are_named():
  models, ids, _, _ = planted_atlas(roots=1)
  with pytest.raises(ValueError, match="ids"):
    recover_lineage(models, ids[:-1])
  with pytest.raises(ValueError, match="not among the models"):
    recover_lineage(models, ids, known_edges=[("nope", ids[0])])
