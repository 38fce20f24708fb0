"""Chu-Liu/Edmonds against hand-made optima, brute force and networkx."""
import itertools

import networkx as nx
import numpy as np
import pytest

from jatlas.atlas.arborescence import min_arborescence

INF = np.inf


def total(cost, parent):
  return sum(cost[p, c] for c, p in enumerate(parent) if p >= 0)


def brute_force(cost, root, forbidden=(), leaves=()):
  """Cheapest parent assignment that reaches `root` from every node without cycles."""
  n, best = len(cost), (INF, None)
  choices = [[-1] if v == root else [u for u in range(n) if u != v] for v in range(n)]
  for parent in itertools.product(*choices):
    if any(parent[c] == p for p, c in forbidden) or any(p in leaves for p in parent):
      continue
    ok = True
    for v in range(n):
      seen, u = set(), v
      while u != root and ok:
        if u in seen:
          ok = False
        seen.add(u)
        u = parent[u]
    if ok and total(cost, parent) < best[0]:
      best = (total(cost, parent), parent)
  return best


def test_hand_made_cycle_contraction():
  # cheapest in-edges: 1<->2 form a cycle (cost 1 each); entering the cycle from root 0
  # costs 10 at node 1 or 12 at node 2: the optimum enters at 1 and keeps 1 -> 2
  cost = np.array([[INF, 10, 12, INF],
                   [INF, INF, 1, 5],
                   [INF, 1, INF, 2],
                   [INF, INF, INF, INF]], float)
  parent = min_arborescence(cost, root=0)
  np.testing.assert_array_equal(parent, [-1, 0, 1, 2])
  assert total(cost, parent) == 13


def test_nested_cycles_match_brute_force_and_networkx():
  rng = np.random.default_rng(0)
  for trial in range(30):
    n = int(rng.integers(3, 7))
    cost = rng.integers(1, 20, size=(n, n)).astype(float)
    np.fill_diagonal(cost, INF)
    parent = min_arborescence(cost, root=0)
    want, _ = brute_force(cost, 0)
    assert total(cost, parent) == want, (trial, cost, parent)
    g = nx.DiGraph()
    g.add_weighted_edges_from((i, j, cost[i, j]) for i in range(n) for j in range(1, n)
                              if i != j)
    ref = nx.minimum_spanning_arborescence(g)
    assert sum(d["weight"] for *_, d in ref.edges(data=True)) == want


def test_free_root_forced_forbidden_and_leaves():
  rng = np.random.default_rng(1)
  n = 5
  cost = rng.integers(1, 30, size=(n, n)).astype(float)
  np.fill_diagonal(cost, INF)
  parent = min_arborescence(cost)  # one root, chosen by the solver
  assert (parent == -1).sum() == 1
  want = min(brute_force(cost, r)[0] for r in range(n))
  assert total(cost, parent) == want
  # leaves have no children; forbidden edges are avoided
  forbidden, leaves = [(int(parent[1]), 1)] if parent[1] >= 0 else [], [3]
  got = min_arborescence(cost, root=0, forbidden=forbidden, leaves=leaves)
  assert 3 not in got
  assert all(got[c] != p for p, c in forbidden)
  assert total(cost, got) == brute_force(cost, 0, forbidden, leaves)[0]
  # a forced edge is kept even when it is expensive
  cost[2, 4] = 1000.0
  got = min_arborescence(cost, root=0, forced=[(2, 4)])
  assert got[4] == 2


def test_root_cost_makes_a_forest():
  # two groups joined only by expensive edges: cheaper to pay two roots
  cost = np.full((4, 4), 100.0)
  cost[0, 1] = cost[2, 3] = 1.0
  np.fill_diagonal(cost, INF)
  parent = min_arborescence(cost, root_cost=10.0)
  np.testing.assert_array_equal(parent, [-1, 0, -1, 2])
  # node-wise root costs: node 1 is free to be a root (a merge whose parents are elsewhere)
  parent = min_arborescence(cost, root_cost=np.array([200, 0, 200, 200.0]))
  assert parent[1] == -1 and (parent == -1).sum() == 1 and parent[0] == 1


def test_errors_list_every_problem():
  cost = np.ones((3, 3))
  with pytest.raises(ValueError, match="square"):
    min_arborescence(np.ones((2, 3)))
  with pytest.raises(ValueError, match="2 forced parents"):
    min_arborescence(cost, forced=[(0, 2), (1, 2)])
  with pytest.raises(ValueError, match="no allowed parent"):
    min_arborescence(np.full((3, 3), INF), root=0)
