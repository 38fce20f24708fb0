"""Questions about one model of an atlas: its family, its tree, the best model in it.

Lists of models come nearest first, ties by id. A model's root is the ancestor
without parents; a merge of models from several trees has several roots
(`roots`), and `root` picks the one with the most descendants (ties: smallest
id), so `tree` is the model's main family. An unknown id raises
UnknownNodeError naming the closest ids.

Usage:
  ancestors(atlas, "org/ft"); descendants(atlas, "org/base"); siblings(atlas, "org/ft")
  root(atlas, "org/ft"); tree(atlas, "org/ft")          # the sub-atlas of its root
  best_in_tree(atlas, "org/ft", "test_acc")             # ("org/ft2", 0.97) or None
  path(atlas, "org/a", "org/b")                         # ["org/a", "org/base", "org/b"] or None
"""
import networkx as nx

from jatlas.atlas.graph import Atlas, is_finite


def _by_distance(distances: dict, node_id: str) -> list[str]:
  return sorted((n for n in distances if n != node_id), key=lambda n: (distances[n], n))


def ancestors(atlas: Atlas, node_id: str) -> list[str]:
  """Every model `node_id` descends from, parents first."""
  atlas.require(node_id)
  return _by_distance(nx.single_source_shortest_path_length(atlas.graph.reverse(copy=False),
                                                            node_id), node_id)


def descendants(atlas: Atlas, node_id: str) -> list[str]:
  """Every model made (transitively) from `node_id`, children first."""
  atlas.require(node_id)
  return _by_distance(nx.single_source_shortest_path_length(atlas.graph, node_id), node_id)


def roots(atlas: Atlas, node_id: str) -> list[str]:
  """The ancestors of `node_id` (or itself) without parents, sorted."""
  family = [node_id, *ancestors(atlas, node_id)]
  return sorted(n for n in family if atlas.graph.in_degree(n) == 0)


def root(atlas: Atlas, node_id: str) -> str:
  """The root of `node_id`'s main tree (module docstring)."""
  return min(roots(atlas, node_id),
             key=lambda r: (-len(nx.descendants(atlas.graph, r)), r))


def tree(atlas: Atlas, node_id: str) -> Atlas:
  """The sub-atlas of `node_id`'s root: the root and all its descendants."""
  r = root(atlas, node_id)
  return atlas.subatlas([r, *descendants(atlas, r)])


def siblings(atlas: Atlas, node_id: str) -> list[str]:
  """Models sharing a parent with `node_id`, sorted."""
  return sorted({c for p in atlas.parents(node_id) for c in atlas.graph.successors(p)}
                - {node_id})


def best_in_tree(atlas: Atlas, node_id: str, trait: str, higher: bool = True):
  """(id, value) of the model of `node_id`'s tree with the highest (higher=False:
  lowest) finite `trait`; ties by id; None when no model of the tree has it."""
  sub = tree(atlas, node_id).graph
  scored = [(n, v) for n, traits in sub.nodes(data="traits")
            if is_finite(v := (traits or {}).get(trait))]
  if not scored:
    return None
  return min(scored, key=lambda nv: (-nv[1] if higher else nv[1], nv[0]))


def path(atlas: Atlas, a: str, b: str) -> list[str] | None:
  """The shortest chain of lineage links from `a` to `b`, in either direction
  (e.g. up to a shared ancestor and down again), or None if unrelated."""
  atlas.require(a), atlas.require(b)
  try:
    return nx.shortest_path(atlas.graph.to_undirected(as_view=True), a, b)
  except nx.NetworkXNoPath:
    return None
