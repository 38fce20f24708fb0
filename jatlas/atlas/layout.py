"""Tree layout of an atlas: every weakly connected component is a tree drawn top-down,
and the trees are packed side by side in rows.

A node's generation is the length of the longest path from a root to it, so a merge
sits one level below its deepest parent. Each node hangs under one primary parent (a
deepest one; the most confident edge breaks ties) and the primary forest is laid out
by leaf slots: leaves take consecutive integer x, a parent sits midway between its
first and last child, so subtrees occupy disjoint x intervals and never overlap. The
components (boxes of leaves x generations) are then shelf-packed, tallest first, in
rows `gap` units apart, the shelf width chosen so the whole is about `aspect` times
wider than high. Everything
is O(nodes + edges); x and y are in slot / generation units (y = -generation).

Usage:
  pos = tree_layout(atlas)              # or tree_layout(atlas.graph): {node: (x, y)}
  gen = generations(atlas.graph)        # {node: longest path from a root}
  boxes = tree_boxes(atlas.graph, pos)  # [(x_min, x_max, y_min, y_max), ...] per tree
  xy_N2 = positions(atlas, pos)         # node order; checks pos covers every node
"""
import math
from collections import deque

import networkx as nx
import numpy as np


def as_digraph(atlas) -> nx.DiGraph:
  """The networkx DiGraph of an Atlas (its `.graph`) or the DiGraph itself."""
  # a DiGraph has a `.graph` too (its attribute dict)
  g = atlas if isinstance(atlas, nx.DiGraph) else getattr(atlas, "graph", atlas)
  if not isinstance(g, nx.DiGraph):
    raise TypeError(f"atlas: expected an Atlas or a networkx DiGraph, got {type(atlas).__name__}")
  return g


def _depths(g: nx.DiGraph, nodes: list, index: dict) -> list[int]:
  """Longest-path depth per node index (Kahn's order). Nodes on a cycle (an invalid
  atlas) get one more than their deepest already placed parent."""
  indeg = [g.in_degree(v) for v in nodes]
  depth = [0] * len(nodes)
  done = [False] * len(nodes)
  queue = deque(i for i, d in enumerate(indeg) if d == 0)
  while queue:
    u = queue.popleft()
    done[u] = True
    for c in g.successors(nodes[u]):
      j = index[c]
      depth[j] = max(depth[j], depth[u] + 1)
      indeg[j] -= 1
      if indeg[j] == 0:
        queue.append(j)
  for i in (i for i in range(len(nodes)) if not done[i]):
    placed = [depth[index[p]] for p in g.predecessors(nodes[i]) if done[index[p]]]
    depth[i] = 1 + max(placed, default=-1)
    done[i] = True
  return depth


def generations(atlas) -> dict:
  """{node: length of the longest path from a root to it}."""
  g = as_digraph(atlas)
  nodes = list(g.nodes)
  depth = _depths(g, nodes, {v: i for i, v in enumerate(nodes)})
  return dict(zip(nodes, depth))


def _primary_children(g, nodes, index, depth) -> tuple[list[list[int]], list[int]]:
  """Children lists of the primary forest and its roots (insertion order)."""
  children = [[] for _ in nodes]
  roots = []
  for i, v in enumerate(nodes):
    best, key = -1, None
    for p, _, conf in g.in_edges(v, data="confidence"):
      j = index[p]
      k = (depth[j], 1.0 if conf is None else conf, -j)
      if depth[j] < depth[i] and (key is None or k > key):
        best, key = j, k
    (children[best] if best >= 0 else roots).append(i)
  return children, roots


def _leaf_slots(children, root: int, first: int, x: list) -> int:
  """Writes x of root's primary subtree from slot `first`; returns the next free slot."""
  stack, slot = [(root, False)], first
  while stack:
    v, closing = stack.pop()
    kids = children[v]
    if closing:
      x[v] = 0.5 * (x[kids[0]] + x[kids[-1]])
    elif not kids:
      x[v], slot = float(slot), slot + 1
    else:
      stack.append((v, True))
      stack.extend((c, False) for c in reversed(kids))
  return slot


def _shelf_pack_rows(sizes, order, gap: float, row_w: float):
  """Top-left corners of (width, height) boxes placed in `order` on shelves of
  width row_w, and the extent (width, height) of the whole."""
  corners = [None] * len(sizes)
  x = top = row_h = extent = 0.0
  for k in order:
    w, h = sizes[k]
    if x > 0 and x + w > row_w:
      x, top, row_h = 0.0, top + row_h + gap, 0.0
    corners[k] = (x, top)
    extent = max(extent, x + w)
    x += w + gap
    row_h = max(row_h, h)
  return corners, (extent, top + row_h)


def _shelf_pack(sizes: list[tuple[int, int]], gap: float, aspect: float):
  """Top-left corners for (width, height) boxes, tallest first, on shelves: of a few
  shelf widths around sqrt(aspect * area), the one whose extent is closest to
  `aspect` (width / height)."""
  if not sizes:
    return []
  area = sum((w + gap) * (h + gap) for w, h in sizes)
  widest = max(w for w, _ in sizes)
  order = sorted(range(len(sizes)), key=lambda k: (-sizes[k][1], -sizes[k][0], k))
  best = None
  for f in (0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0):
    corners, (w, h) = _shelf_pack_rows(sizes, order, gap, max(widest, f * math.sqrt(aspect * area)))
    miss = abs(math.log(max(w, 1.0) / max(h, 1.0) / aspect))
    if best is None or miss < best[0] - 1e-9:
      best = (miss, corners)
  return best[1]


def tree_layout(atlas, *, gap: float = 2.0, aspect: float = 2.0) -> dict:
  """{node: (x, y)}: trees top-down (y = -generation within the tree's row), children
  always below every parent, trees `gap` units apart in rows ~`aspect` times wider
  than the whole is high."""
  g = as_digraph(atlas)
  nodes = list(g.nodes)
  index = {v: i for i, v in enumerate(nodes)}
  depth = _depths(g, nodes, index)
  children, roots = _primary_children(g, nodes, index, depth)
  comp = [0] * len(nodes)
  for k, members in enumerate(nx.weakly_connected_components(g)):
    for v in members:
      comp[index[v]] = k
  n_comp = max(comp, default=-1) + 1
  x = [0.0] * len(nodes)
  width, top_depth, bottom_depth = [0] * n_comp, [math.inf] * n_comp, [0] * n_comp
  for r in roots:  # a component's roots side by side, in insertion order
    width[comp[r]] = _leaf_slots(children, r, width[comp[r]], x)
  for i, k in enumerate(comp):
    top_depth[k] = min(top_depth[k], depth[i])
    bottom_depth[k] = max(bottom_depth[k], depth[i])
  heights = [b - t for b, t in zip(bottom_depth, top_depth)]
  corners = _shelf_pack([(max(w - 1, 0), h) for w, h in zip(width, heights)], gap, aspect)
  pos = {}
  for i, v in enumerate(nodes):
    cx, cy = corners[comp[i]]
    pos[v] = (cx + x[i], -(cy + depth[i] - top_depth[comp[i]]))
  return pos


def positions(atlas, pos: dict | None = None) -> np.ndarray:
  """xy_N2 of the atlas's nodes in node order, from `pos` (default: tree_layout)."""
  g = as_digraph(atlas)
  pos = tree_layout(g) if pos is None else pos
  missing = [v for v in g if v not in pos]
  if missing:
    raise ValueError(f"pos: no position for {len(missing)} node(s), e.g. {missing[:3]}")
  return np.array([pos[v] for v in g], float).reshape(-1, 2)


def tree_boxes(atlas, pos: dict) -> list[tuple[float, float, float, float]]:
  """(x_min, x_max, y_min, y_max) of every weakly connected component under `pos`."""
  g = as_digraph(atlas)
  boxes = []
  for members in nx.weakly_connected_components(g):
    xs = [pos[v][0] for v in members]
    ys = [pos[v][1] for v in members]
    boxes.append((min(xs), max(xs), min(ys), max(ys)))
  return boxes
