"""Static figure of an atlas (matplotlib): trees top-down, edges coloured by relation,
documented edges solid and recovered ones dashed, each edge as opaque as it is
confident, placeholders (parents absent from the data) hollow.

Edges go through one LineCollection per (relation, provenance) and nodes through two
scatters, so 10k models draw in one pass. The figure grows with the atlas (up to a
cap) and marker and line sizes follow the layout's slot size in points, so a large
atlas stays legible; node ids are written only when there are at most `max_labels`
models (highlighted models are always labelled).

Usage:
  draw_static(atlas, "atlas.png")                       # or atlas.graph
  draw_static(atlas, "atlas.pdf", highlight=["org/merged"], max_labels=100)
  pos = tree_layout(atlas); draw_static(atlas, "a.png", pos=pos, title="digits zoo")
"""
import os
from typing import Iterable

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jatlas import files
from jatlas.atlas.graph import RELATIONS, close_names
from jatlas.atlas.layout import as_digraph, positions, tree_layout

# Okabe-Ito colours: distinguishable with colour-blindness and in greyscale-ish prints.
RELATION_COLOURS = {"finetune": "#0072B2", "adapter": "#009E73", "quantized": "#E69F00",
                    "merge": "#CC79A7"}
OTHER_COLOUR = "#999999"  # a relation outside RELATIONS
NODE_COLOUR = "#404040"
HIGHLIGHT_COLOUR = "#D00000"


def edge_alpha(confidence) -> float:
  """Opacity of an edge: 0.25 at confidence 0, 1 at confidence 1 (or unknown)."""
  c = 1.0 if confidence is None else min(max(float(confidence), 0.0), 1.0)
  return 0.25 + 0.75 * c


def edge_groups(g, pos: dict) -> dict[tuple[str, str], dict]:
  """{(relation, provenance): {"parent", "child", "confidence", "seg_E22"}}, each in
  edge order; groups in RELATIONS order (then any other relation), documented first."""
  groups = {}
  for p, c, d in g.edges(data=True):
    key = (d.get("relation") or "unknown", d.get("provenance") or "documented")
    grp = groups.setdefault(key, {"parent": [], "child": [], "confidence": [], "seg": []})
    grp["parent"].append(p)
    grp["child"].append(c)
    grp["confidence"].append(d.get("confidence"))
    grp["seg"].append((pos[p], pos[c]))
  rank = {r: k for k, r in enumerate(RELATIONS)}
  order = sorted(groups, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1] != "documented"))
  return {k: {"parent": groups[k]["parent"], "child": groups[k]["child"],
              "confidence": groups[k]["confidence"],
              "seg_E22": np.asarray(groups[k]["seg"], float).reshape(-1, 2, 2)} for k in order}


def relation_colour(relation: str) -> str:
  return RELATION_COLOURS.get(relation, OTHER_COLOUR)


def check_highlight(g, highlight) -> list:
  """The highlighted node ids as a list (a single id may be passed as a string)."""
  if highlight is None:
    return []
  ids = [highlight] if isinstance(highlight, str) else list(highlight)
  missing = [h for h in ids if h not in g]
  if missing:
    raise ValueError(f"highlight: {len(missing)} id(s) not in the atlas: "
                     + "; ".join(f"{m!r}{close_names(m, g.nodes)}" for m in missing))
  return ids


def _figure_size(xy_N2: np.ndarray, n: int) -> tuple[float, float]:
  """Inches: about 0.35 in per sqrt(model), shaped like the layout, capped."""
  if n == 0:
    return 6.0, 4.0
  span = xy_N2.max(0) - xy_N2.min(0) + 2.0
  ratio = float(np.clip(span[0] / max(span[1], 1.0) / 2.0, 0.5, 2.5))
  side = float(np.clip(0.35 * np.sqrt(n), 6.0, 22.0))
  return side * np.sqrt(ratio), side / np.sqrt(ratio)


def _slot_points(xy_N2: np.ndarray, width_in: float) -> float:
  """Points per x slot of the layout (the unit a marker and a line scale with)."""
  span = xy_N2[:, 0].max() - xy_N2[:, 0].min() + 2.0 if len(xy_N2) else 1.0
  return 72.0 * 0.8 * width_in / span


def _draw_edges(ax, groups: dict, line_w: float) -> list:
  handles = []
  for (rel, prov), grp in groups.items():
    rgba_E4 = np.tile(to_rgba(relation_colour(rel)), (len(grp["seg_E22"]), 1))
    rgba_E4[:, 3] = [edge_alpha(c) for c in grp["confidence"]]
    ax.add_collection(LineCollection(grp["seg_E22"], colors=rgba_E4, linewidths=line_w,
                                     linestyles="solid" if prov == "documented" else (0, (3, 2)),
                                     zorder=1))
  for rel in dict.fromkeys(rel for rel, _ in groups):
    handles.append(Line2D([], [], color=relation_colour(rel), lw=2, label=rel))
  for prov in dict.fromkeys(prov for _, prov in groups):
    handles.append(Line2D([], [], color="black", lw=1.2, label=prov,
                          ls="-" if prov == "documented" else (0, (3, 2))))
  return handles


def _draw_nodes(ax, g, nodes, xy_N2, size: float, highlight: list) -> list:
  hollow_N = np.array([bool(g.nodes[v].get("placeholder")) for v in nodes], bool)
  handles = []
  if (~hollow_N).any():
    ax.scatter(*xy_N2[~hollow_N].T, s=size, c=NODE_COLOUR, linewidths=0, zorder=2)
    handles.append(Line2D([], [], ls="", marker="o", color=NODE_COLOUR, label="model"))
  if hollow_N.any():
    ax.scatter(*xy_N2[hollow_N].T, s=size, facecolors="white", edgecolors=NODE_COLOUR,
               linewidths=0.8, zorder=2)
    handles.append(Line2D([], [], ls="", marker="o", mfc="white", color=NODE_COLOUR,
                          label="placeholder (absent)"))
  if highlight:
    index = {v: i for i, v in enumerate(nodes)}
    ax.scatter(*xy_N2[[index[h] for h in highlight]].T, s=4 * size + 30, facecolors="none",
               edgecolors=HIGHLIGHT_COLOUR, linewidths=1.5, zorder=3)
    handles.append(Line2D([], [], ls="", marker="o", mfc="none", color=HIGHLIGHT_COLOUR,
                          label="highlighted"))
  return handles


def _draw_labels(ax, nodes, xy_N2, labelled: Iterable, highlight: list, font: float):
  index = {v: i for i, v in enumerate(nodes)}
  for v in dict.fromkeys([*labelled, *highlight]):
    x, y = xy_N2[index[v]]
    hot = v in highlight
    ax.annotate(str(v), (x, y), xytext=(3, 3), textcoords="offset points", rotation=25,
                fontsize=font, color=HIGHLIGHT_COLOUR if hot else "black",
                fontweight="bold" if hot else "normal", zorder=4)


def draw_static(atlas, path: str, *, highlight=None, max_labels: int = 60, pos: dict | None = None,
                title: str | None = None, dpi: int = 150) -> None:
  """Writes the atlas figure to `path` (format from its suffix: png, pdf, svg, ...)."""
  g = as_digraph(atlas)
  highlight = check_highlight(g, highlight)
  pos = tree_layout(g) if pos is None else pos
  nodes = list(g.nodes)
  xy_N2 = positions(g, pos)
  w_in, h_in = _figure_size(xy_N2, len(nodes))
  slot_pt = _slot_points(xy_N2, w_in)
  fig = Figure(figsize=(w_in, h_in), layout="constrained")
  ax = fig.add_subplot()
  handles = _draw_edges(ax, edge_groups(g, pos), float(np.clip(0.12 * slot_pt, 0.3, 1.6)))
  handles += _draw_nodes(ax, g, nodes, xy_N2, float(np.clip((0.5 * slot_pt) ** 2, 1.0, 50.0)),
                         highlight)
  if len(nodes) <= max_labels:
    _draw_labels(ax, nodes, xy_N2, nodes, highlight, float(np.clip(0.45 * slot_pt, 4, 8)))
  elif highlight:
    _draw_labels(ax, nodes, xy_N2, [], highlight, 8)
  ax.autoscale_view()
  ax.margins(0.03)
  ax.set_axis_off()
  n_edges = g.number_of_edges()
  ax.set_title(f"{title + ': ' if title else ''}{len(nodes)} models, {n_edges} edges", fontsize=10)
  if handles:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              fontsize=8)
  fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
  with files.atomic_path(os.fspath(path)) as tmp:
    fig.savefig(tmp, format=fmt, dpi=dpi)
