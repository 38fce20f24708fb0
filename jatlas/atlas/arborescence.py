"""Minimum directed spanning tree (Chu-Liu/Edmonds) on a dense cost matrix.

cost[i, j] is the cost of the edge i -> j (i the parent of j); inf means no edge. The
solver picks every node's cheapest incoming edge, contracts all the cycles this makes
at once (an edge entering a cycle at v costs its cost minus v's chosen in-cost), solves
the smaller problem and expands it: O(n^2) per level, few levels in practice. NumPy
rather than networkx's Edmonds, which is pure Python per edge and too slow for trees of
thousands of models.

`min_arborescence` adds what lineage recovery needs: a virtual root, so the result
is a forest when some nodes must be roots (`root_cost`: a node's price for having
no parent; the default, above any finite edge cost, gives as few roots as the graph
allows), forced edges (documented parents), forbidden edges, and leaves (nodes with
no children, e.g. quantized models).

Usage:
  parent_N = min_arborescence(cost_NN)                  # -1 marks roots
  parent_N = min_arborescence(cost_NN, forced=[(0, 3)], forbidden=[(2, 1)], leaves=[4])
  parent_N = min_arborescence(cost_NN, root=0)          # exactly one root, node 0
"""
from typing import Iterable

import numpy as np


def _cycles(par_N: np.ndarray, root: int) -> np.ndarray:
  """Cycle id per node (-1: on no cycle) of the functional graph v -> par[v]."""
  n = len(par_N)
  state = np.zeros(n, np.int8)  # 0 unseen, 1 on the current walk, 2 done
  state[root] = 2
  cyc, k = np.full(n, -1), 0
  for start in range(n):
    path, v = [], start
    while state[v] == 0:
      state[v] = 1
      path.append(v)
      v = par_N[v]
    if state[v] == 1:  # the walk closed a cycle at v
      members = path[path.index(v):]
      cyc[members] = k
      k += 1
    state[path] = 2
  return cyc


def _edmonds(c_NN: np.ndarray, root: int) -> np.ndarray:
  """par_N of the minimum arborescence rooted at root (c[:, root] is ignored)."""
  n = len(c_NN)
  c = c_NN.copy()
  c[:, root] = np.inf
  np.fill_diagonal(c, np.inf)
  par = np.argmin(c, 0)
  par[root] = root
  cyc = _cycles(par, root)
  if cyc.max() < 0:
    par[root] = -1
    return par
  n_cyc = cyc.max() + 1
  free = np.flatnonzero(cyc < 0)
  label = np.empty(n, np.int64)
  label[free] = np.arange(len(free))
  on = cyc >= 0
  label[on] = len(free) + cyc[on]
  m = len(free) + n_cyc
  in_cost = np.where(on, c[par, np.arange(n)], 0.0)
  adj = c - in_cost[None, :]
  adj[label[:, None] == label[None, :]] = np.inf
  order = np.argsort(label, kind="stable")
  starts = np.searchsorted(label[order], np.arange(m))
  small = np.minimum.reduceat(np.minimum.reduceat(adj[order][:, order], starts, 0), starts, 1)
  small_par = _edmonds(small, int(label[root]))
  out = par.copy()
  for b in range(m):
    a = small_par[b]
    if a < 0:
      continue
    us, vs = np.flatnonzero(label == a), np.flatnonzero(label == b)
    block = adj[np.ix_(us, vs)]
    u, v = np.unravel_index(np.argmin(block), block.shape)
    out[vs[v]] = us[u]
  out[root] = -1
  return out


def _pairs(edges, n: int, what: str) -> np.ndarray:
  e = np.asarray(list(edges), np.int64).reshape(-1, 2)
  bad = e[(e < 0).any(1) | (e >= n).any(1) | (e[:, 0] == e[:, 1])]
  if len(bad):
    raise ValueError(f"min_arborescence: {what} edges must join two distinct nodes in "
                     f"[0, {n}); got {bad.tolist()[:10]}")
  return e


def min_arborescence(cost_NN, root: int | None = None, *, root_cost=None,
                     forced: Iterable = (), forbidden: Iterable = (),
                     leaves: Iterable = ()) -> np.ndarray:
  """parent_N (-1 for roots) of the cheapest spanning forest/tree (module docstring)."""
  c = np.array(cost_NN, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f"min_arborescence: cost_NN must be square [N, N], got {c.shape}")
  n = len(c)
  if n == 0:
    return np.zeros(0, np.int64)
  forced_e, forbidden_e = _pairs(forced, n, "forced"), _pairs(forbidden, n, "forbidden")
  kids, counts = np.unique(forced_e[:, 1], return_counts=True)
  problems = [f"node {k} has {cnt} forced parents" for k, cnt in zip(kids, counts) if cnt > 1]
  leaf = np.asarray(list(leaves), np.int64)
  problems += [f"forced edge {p}->{ch} leaves leaf {p}" for p, ch in forced_e if p in set(leaf)]
  if root is not None and root in set(forced_e[:, 1]):
    problems.append(f"root {root} has a forced parent")
  if problems:
    raise ValueError("min_arborescence: " + "; ".join(problems))
  c[forbidden_e[:, 0], forbidden_e[:, 1]] = np.inf
  c[leaf, :] = np.inf
  for p, ch in forced_e:
    keep = c[p, ch] if np.isfinite(c[p, ch]) else 0.0
    c[:, ch] = np.inf
    c[p, ch] = keep
  finite = c[np.isfinite(c)]
  big = (np.abs(finite).max() + 1.0) * (n + 1) if len(finite) else 1.0
  r = np.full(n, big) if root_cost is None else np.broadcast_to(
      np.asarray(root_cost, np.float64), (n,)).copy()
  if root is not None:
    r[:] = np.inf
    r[root] = 0.0
    c[:, root] = np.inf
  r[forced_e[:, 1]] = np.inf
  full = np.full((n + 1, n + 1), np.inf)
  full[:n, :n] = c
  full[n, :n] = r
  col_ok = np.isfinite(full[:, :n]).any(0)
  if not col_ok.all():
    raise ValueError(f"min_arborescence: nodes {np.flatnonzero(~col_ok).tolist()[:10]} "
                     f"have no allowed parent and cannot be roots")
  par = _edmonds(full, n)[:n]
  if not np.isfinite(full[par, np.arange(n)]).all():
    raise ValueError("min_arborescence: no spanning arborescence uses only allowed edges "
                     "(pass root_cost, or allow more edges)")
  return np.where(par == n, -1, par).astype(np.int64)
