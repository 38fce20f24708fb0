"""Queries on a hand-made atlas: two trees joined by a merge, a quantized leaf, a loner."""
import math

import pytest

from jatlas.atlas import queries
from jatlas.atlas.graph import Atlas, UnknownNodeError

#      r1            r2       lone
#     /  \           |
#    a    b          c
#   / \              |
#  a1  a2 --merge--> m <-- c (merge)
#  |
#  q (quantized)
ACC = {"r1": 0.5, "a": 0.6, "b": 0.7, "a1": 0.9, "a2": 0.8, "q": math.nan, "c": 0.95,
       "m": 0.99}


@pytest.fixture
def atlas():
  a = Atlas()
  for n in ("r1", "a", "b", "a1", "a2", "q", "r2", "c", "m", "lone"):
    a.add_node(n, traits={"test_acc": ACC[n]} if n in ACC else {})
  for p, c in (("r1", "a"), ("r1", "b"), ("a", "a1"), ("a", "a2"), ("r2", "c")):
    a.add_edge(p, c, "finetune")
  a.add_edge("a1", "q", "quantized")
  a.add_edge("a2", "m", "merge")
  a.add_edge("c", "m", "merge")
  assert a.validate() == []
  return a


def test_ancestors_and_descendants_nearest_first(atlas):
  assert queries.ancestors(atlas, "a1") == ["a", "r1"]
  assert queries.ancestors(atlas, "m") == ["a2", "c", "a", "r2", "r1"]
  assert queries.ancestors(atlas, "r1") == []
  assert queries.descendants(atlas, "r1") == ["a", "b", "a1", "a2", "m", "q"]
  assert queries.descendants(atlas, "q") == []


def test_roots_root_and_tree(atlas):
  assert queries.roots(atlas, "m") == ["r1", "r2"]
  assert queries.root(atlas, "m") == "r1"  # r1 has 6 descendants, r2 has 2
  assert queries.root(atlas, "c") == "r2" and queries.root(atlas, "lone") == "lone"
  sub = queries.tree(atlas, "c")
  assert sorted(sub.graph) == ["c", "m", "r2"]
  assert sorted(sub.graph.edges) == [("c", "m"), ("r2", "c")]
  assert len(queries.tree(atlas, "q")) == 7
  assert sub.node("m")["traits"] == {"test_acc": 0.99}


def test_siblings(atlas):
  assert queries.siblings(atlas, "a1") == ["a2"]
  assert queries.siblings(atlas, "a") == ["b"]
  assert queries.siblings(atlas, "r1") == [] and queries.siblings(atlas, "c") == []


def test_best_in_tree(atlas):
  assert queries.best_in_tree(atlas, "q", "test_acc") == ("m", 0.99)
  assert queries.best_in_tree(atlas, "q", "test_acc", higher=False) == ("r1", 0.5)
  assert queries.best_in_tree(atlas, "r2", "test_acc") == ("m", 0.99)
  assert queries.best_in_tree(atlas, "q", "val_acc") is None
  assert queries.best_in_tree(atlas, "lone", "test_acc") is None


def test_path_through_lineage(atlas):
  assert queries.path(atlas, "b", "q") == ["b", "r1", "a", "a1", "q"]
  assert queries.path(atlas, "q", "r2") == ["q", "a1", "a", "a2", "m", "c", "r2"]
  assert queries.path(atlas, "a", "a") == ["a"]
  assert queries.path(atlas, "b", "lone") is None


@pytest.mark.parametrize("query", [queries.ancestors, queries.descendants, queries.root,
                                   queries.tree, queries.siblings])
def test_unknown_id_suggests_close_ones(atlas, query):
  with pytest.raises(UnknownNodeError, match=r"unknown model 'a12'.*did you mean 'a2', 'a1'"):
    query(atlas, "a12")
  with pytest.raises(UnknownNodeError, match="'lone'"):
    queries.path(atlas, "b", "lonely")
