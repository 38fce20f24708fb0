"""Lineage recovery time as the atlas grows: jatlas.atlas.recover vs a NumPy/SciPy pipeline.

Planted atlases in NumPy: trees of --tree-size models (small MLP shapes, 1,158
weights a model); a tree grows from a heavy-tailed root, each new model the child of
a random earlier one (fans and snakes mixed): child = 1.02 x parent + Gaussian noise
of 8% of the parent's RMS (so RMS rises and kurtosis falls from parent to child).
Both sides get the same float32 weights and the number of trees:
  jatlas    `recover_lineage(models, ids, n_trees=T, quantized=False, merges=False,
            low_rank=False)`: kNN single-linkage trees on a sketch, peak
            distances on device (jitted, chunked), a direction rule fitted on the
            trees' spanning trees, Chu-Liu/Edmonds per tree. Timed after a warm-up
            call on one tree (compiles); the first call's seconds are reported too.
  baseline  what a user writes with NumPy/SciPy/networkx (MoTHer's pipeline): Ward
            clustering of the flattened weights (scipy, cut at T trees), per tree
            the same peak distance over the weight matrices (NumPy partition per
            row: the mean of the 4 largest coordinate changes per layer), the
            kurtosis direction penalty (scipy.stats.kurtosis, lambda = 0.3 mean D),
            networkx's minimum spanning arborescence (Edmonds).

  python benchmarks/atlas_scale.py              # 1,000, 5,000 and 10,000 nodes
  python benchmarks/atlas_scale.py --smoke      # 200 nodes

Prints one JSON line per size: {"name", "jatlas", "baseline", "ratio", "unit"} with unit
seconds (ratio = baseline / jatlas: > 1 means jatlas is faster), plus nodes, trees,
jatlas_first_s and the directed edge accuracy of each side on the planted truth.
"""
import argparse
import json
import sys
import time

import networkx as nx
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import cdist
from scipy.stats import kurtosis

from jatlas.atlas.recover import PEAK_TOP, recover_lineage

SHAPES = {"params/fc1/kernel": (16, 24), "params/fc1/bias": (24,),
          "params/fc2/kernel": (24, 24), "params/fc2/bias": (24,),
          "params/head/kernel": (24, 6), "params/head/bias": (6,)}
SIZES = (1000, 5000, 10000)


def planted(nodes: int, tree_size: int, seed: int = 0):
  """(stacked {name: [M, ...]}, ids, parent index per model (-1: root), trees)."""
  rng = np.random.default_rng(seed)
  trees = max(1, nodes // tree_size)
  out = {k: np.zeros((trees * tree_size, *s), np.float32) for k, s in SHAPES.items()}
  parent = np.full(trees * tree_size, -1)
  for t in range(trees):
    base = t * tree_size
    for k, s in SHAPES.items():
      out[k][base] = rng.standard_t(4, size=s)
    for i in range(1, tree_size):
      p = base + rng.integers(i)
      parent[base + i] = p
      for k in SHAPES:
        w = out[k][p]
        out[k][base + i] = 1.02 * w + 0.08 * np.sqrt(np.mean(w ** 2)) * rng.normal(size=w.shape)
  ids = [f"t{i // tree_size}/m{i % tree_size}" for i in range(len(parent))]
  return out, ids, parent, trees


def peak(x_NP, top: int = PEAK_TOP) -> np.ndarray:
  """[N, N] mean of the top largest |x_i - x_j| coordinates, over its median."""
  x = x_NP.astype(np.float64)
  d = np.stack([np.partition(np.abs(x - row), -top, axis=1)[:, -top:].mean(1) for row in x])
  scale = np.median(d[~np.eye(len(x), dtype=bool)]) if len(x) > 1 else 1.0
  return d / (scale if scale > 0 else 1.0)


def baseline_recover(tensors: dict, n_trees: int, lam: float = 0.3) -> np.ndarray:
  """Parent index per model (-1: root) by the plain pipeline (module docstring)."""
  names = sorted(tensors)
  m = len(tensors[names[0]])
  flat = np.concatenate([tensors[k].reshape(m, -1) for k in names], 1).astype(np.float64)
  labels = fcluster(linkage(flat, "ward"), n_trees, "maxclust")
  kernels = [k for k in names if tensors[k].ndim >= 3]
  kurt = sum(kurtosis(tensors[k].reshape(m, -1), axis=1) for k in kernels)
  parent = np.full(m, -1)
  for label in np.unique(labels):
    idx = np.flatnonzero(labels == label)
    d = np.mean([peak(tensors[k][idx].reshape(len(idx), -1)) for k in kernels], 0)
    penalty = lam * d.mean() * (kurt[idx][None, :] > kurt[idx][:, None])
    g = nx.DiGraph()
    g.add_nodes_from(range(len(idx)))
    g.add_weighted_edges_from((i, j, d[i, j] + penalty[i, j]) for i in range(len(idx))
                              for j in range(len(idx)) if i != j)
    for i, j in nx.minimum_spanning_arborescence(g).edges:
      parent[idx[j]] = idx[i]
  return parent


def jatlas_recover(tensors: dict, ids: list, n_trees: int) -> np.ndarray:
  edges = recover_lineage(tensors, ids, n_trees=n_trees, quantized=False, merges=False,
                          low_rank=False)
  pos = {n: i for i, n in enumerate(ids)}
  parent = np.full(len(ids), -1)
  for e in edges:
    parent[pos[e["child"]]] = pos[e["parent"]]
  return parent


def edge_accuracy(true_parent, got_parent) -> float:
  has = true_parent >= 0
  return float(np.mean(got_parent[has] == true_parent[has]))


def run_case(nodes: int, tree_size: int) -> dict:
  tensors, ids, parent, trees = planted(nodes, tree_size)
  t0 = time.perf_counter()
  got = jatlas_recover(tensors, ids, trees)
  jatlas_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  base = baseline_recover(tensors, trees)
  baseline_s = time.perf_counter() - t0
  return {"name": f"recover_{len(ids)}_nodes", "jatlas": round(jatlas_s, 3),
          "baseline": round(baseline_s, 3), "ratio": round(baseline_s / jatlas_s, 2),
          "unit": "s", "nodes": len(ids), "trees": trees,
          "jatlas_edge_acc": round(edge_accuracy(parent, got), 4),
          "baseline_edge_acc": round(edge_accuracy(parent, base), 4)}


def main(argv):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--smoke", action="store_true", help="one atlas of 200 nodes")
  ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
  ap.add_argument("--tree-size", type=int, default=50)
  args = ap.parse_args(argv)
  sizes = [200] if args.smoke else args.sizes
  tree_size = 20 if args.smoke else args.tree_size
  warm, warm_ids, _, _ = planted(2 * tree_size, tree_size, seed=1)
  t0 = time.perf_counter()
  jatlas_recover(warm, warm_ids, 2)  # compiles the programs every case reuses
  first_s = time.perf_counter() - t0
  for n in sizes:
    print(json.dumps({**run_case(n, tree_size), "jatlas_first_s": round(first_s, 3)}),
          flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
