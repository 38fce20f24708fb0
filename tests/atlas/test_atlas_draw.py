"""Tree layout (children below parents, trees apart) and the static atlas figure.

`toy_graph` (also used by test_atlas_page.py) grows a synthetic atlas on a plain
networkx DiGraph with the Atlas attribute schema.
"""
import matplotlib
import networkx as nx
import numpy as np
import pytest
from PIL import Image

from jatlas.atlas.draw import RELATION_COLOURS, draw_static, edge_alpha, edge_groups
from jatlas.atlas.layout import generations, positions, tree_boxes, tree_layout

RELATION_P = {"finetune": 0.55, "adapter": 0.15, "quantized": 0.2, "merge": 0.1}


def toy_graph(trees=4, per_tree=12, seed=0) -> nx.DiGraph:
  """`trees` trees of `per_tree` models: fine-tunes, adapters, quantized leaves and
  2-parent merges grown from random earlier members; tree 0's root is a placeholder;
  every other edge is recovered, with confidence in [0.3, 0.95]."""
  rng = np.random.default_rng(seed)
  g = nx.DiGraph()
  for t in range(trees):
    root = f"org{t}/base"
    g.add_node(root, source=None if t == 0 else {"kind": "hub", "repo_id": root}, traits={},
               meta={"license": "apache-2.0"}, documented=["license"], placeholder=t == 0)
    members, parents_ok = [root], [root]
    for k in range(1, per_tree):
      rel = rng.choice(list(RELATION_P), p=list(RELATION_P.values()))
      n_par = 2 if rel == "merge" and len(parents_ok) >= 2 else 1
      rel = "merge" if n_par == 2 else ("finetune" if rel == "merge" else rel)
      recent = parents_ok[-6:]  # bias to recent members: chains as well as fans
      pars = rng.choice(recent, size=min(n_par, len(recent)), replace=False)
      node = f"org{t}/m{k:03d}-{rel}"
      g.add_node(node, source={"kind": "zoo", "dir": f"zoo{t}", "row": k},
                 traits={"test_acc": round(float(rng.uniform(0.5, 1.0)), 3)},
                 meta={"license": "mit", "task": f"task{k % 3}"},
                 documented=["license", "test_acc"] if k % 2 else ["license"], placeholder=False)
      for e, p in enumerate(pars):
        recovered = (k + e) % 2 == 1
        g.add_edge(str(p), node, relation=str(rel),
                   provenance="recovered" if recovered else "documented",
                   confidence=round(float(rng.uniform(0.3, 0.95)), 3) if recovered else 1.0)
      members.append(node)
      if rel != "quantized":
        parents_ok.append(node)
  return g


def test_toy_graph_is_a_valid_atlas():
  g = toy_graph(trees=5, per_tree=30)
  assert nx.is_directed_acyclic_graph(g) and len(g) == 150
  rels = {d["relation"] for *_, d in g.edges(data=True)}
  assert rels == set(RELATION_P)
  for v in g:
    parents = [d["relation"] for *_, d in g.in_edges(v, data=True)]
    assert parents.count("merge") in (0, 2)
    if v.endswith("quantized"):
      assert g.out_degree(v) == 0


def test_generations_are_longest_paths():
  g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "d"), ("a", "m"), ("d", "m"), ("x", "y")])
  assert generations(g) == {"a": 0, "b": 1, "c": 2, "d": 3, "m": 4, "x": 0, "y": 1}


def test_layout_children_below_every_parent_and_trees_apart():
  g = toy_graph(trees=7, per_tree=25, seed=1)
  g.add_node("lonely", placeholder=False)  # a one-node tree
  pos = tree_layout(g)
  assert set(pos) == set(g)
  for p, c in g.edges:
    assert pos[c][1] < pos[p][1], (p, c)
  gen = generations(g)
  for p, c in g.edges:  # one level below the deepest parent, on the generation grid
    assert gen[c] == 1 + max(gen[q] for q in g.predecessors(c))
  boxes = tree_boxes(g, pos)
  assert len(boxes) == nx.number_weakly_connected_components(g) == 8
  for i, a in enumerate(boxes):
    for b in boxes[i + 1:]:
      apart_x = a[1] < b[0] or b[1] < a[0]
      apart_y = a[3] < b[2] or b[3] < a[2]
      assert apart_x or apart_y, (a, b)
  xy = np.array(list(pos.values()))
  assert len(np.unique(xy, axis=0)) == len(xy)  # no two models on one spot


def test_layout_packs_trees_in_rows_not_one_line():
  g = toy_graph(trees=40, per_tree=10, seed=2)
  xy = np.array(list(tree_layout(g, aspect=2.0).values()))
  width, height = np.ptp(xy[:, 0]), np.ptp(xy[:, 1])
  assert len(np.unique(xy[:, 1])) > 10  # several rows of trees
  assert 0.5 < width / height / 2.0 < 4.0


def test_positions_follow_node_order_and_name_missing_nodes():
  g = nx.DiGraph([("a", "b"), ("a", "c")])
  np.testing.assert_array_equal(positions(g, {"c": (2, 0), "a": (1, 1), "b": (0, 0)}),
                                [[1, 1], [0, 0], [2, 0]])
  with pytest.raises(ValueError, match=r"pos: no position for 2 node\(s\), e.g. \['b', 'c'\]"):
    positions(g, {"a": (0, 0)})


def test_layout_of_a_cycle_and_an_empty_graph():
  assert tree_layout(nx.DiGraph()) == {}
  pos = tree_layout(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]))
  assert set(pos) == {"a", "b", "c", "d"} and pos["d"][1] < pos["c"][1]


def test_edge_groups_and_alpha():
  g = nx.DiGraph()
  g.add_edge("a", "b", relation="merge", provenance="recovered", confidence=0.2)
  g.add_edge("c", "b", relation="merge", provenance="recovered", confidence=0.6)
  g.add_edge("a", "c", relation="finetune", provenance="documented", confidence=1.0)
  pos = {"a": (0.0, 0.0), "b": (1.0, -2.0), "c": (2.0, -1.0)}
  groups = edge_groups(g, pos)
  assert list(groups) == [("finetune", "documented"), ("merge", "recovered")]
  np.testing.assert_array_equal(groups[("merge", "recovered")]["seg_E22"],
                                [[[0, 0], [1, -2]], [[2, -1], [1, -2]]])
  assert edge_alpha(0.0) == 0.25 and edge_alpha(1.0) == 1.0 and edge_alpha(None) == 1.0
  assert edge_alpha(0.6) == pytest.approx(0.25 + 0.75 * 0.6)


def _colour_pixels(path, hex_colour, tol=40):
  rgb = np.asarray(Image.open(path).convert("RGB"), float)
  target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], float)
  return int((np.abs(rgb - target).max(-1) < tol).sum())


def test_draw_static_writes_a_figure_with_every_edge_colour(tmp_path):
  g = toy_graph(trees=4, per_tree=20)
  path = tmp_path / "atlas.png"
  draw_static(g, str(path), highlight=["org1/base"], max_labels=10)
  img = Image.open(path)
  assert img.format == "PNG" and min(img.size) > 300
  for rel, colour in RELATION_COLOURS.items():
    assert _colour_pixels(path, colour) > 20, rel
  empty = tmp_path / "empty.png"
  draw_static(nx.DiGraph(), str(empty))
  assert all(_colour_pixels(empty, c) == 0 for c in RELATION_COLOURS.values())


class _HasGraph:
  def __init__(self, graph):
    self.graph = graph


def test_draw_static_accepts_an_atlas_object_labels_and_svg(tmp_path):
  g = toy_graph(trees=2, per_tree=5)
  path = tmp_path / "small.svg"
  with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, not paths
    draw_static(_HasGraph(g), str(path), max_labels=60)
    draw_static(g, str(tmp_path / "nolabels.svg"), max_labels=3)
  svg = path.read_text()
  assert all(v in svg for v in g)  # few models: every id is written
  assert "org1/m004" not in (tmp_path / "nolabels.svg").read_text()


def test_draw_static_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match=r"highlight: 2 id\(s\).*'nope'.*'org0/bas'.*did you mean"):
    draw_static(toy_graph(2, 4), str(tmp_path / "x.png"), highlight=["nope", "org0/bas"])
  with pytest.raises(TypeError, match="expected an Atlas or a networkx DiGraph"):
    draw_static({"a": 1}, str(tmp_path / "x.png"))
  assert not list(tmp_path.iterdir())  # nothing written half-way
