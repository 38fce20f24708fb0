"""The interactive atlas page: ONE self-contained HTML file (bokeh, its JavaScript
inlined, no CDN) to pan and zoom the atlas, hover a model for its id, source,
metadata and traits (each field marked documented or inferred) and parent edges,
hover an edge's midpoint for its relation, provenance and confidence, and find a
model by id (the box suggests ids; Enter zooms to the model and rings it; a link
`atlas.html#find=<id>` opens zoomed to that model).

Drawn with WebGL (bokeh falls back to a 2D canvas where WebGL is missing): edges are
one segment glyph per (relation, provenance), coloured as in the static figure,
recovered ones dashed, each as opaque as it is confident; models are one scatter
glyph, placeholders hollow. The legend hides a group on click. That keeps the page
usable at 10k models: a handful of glyphs, not one DOM element per model.

Usage:
  write_page(atlas, "atlas.html")                  # or atlas.graph
  write_page(atlas, "atlas.html", title="digits zoo", pos=tree_layout(atlas))
  # then open file:///.../atlas.html#find=base/m00003@e0005
"""
import html
import math
import os

import numpy as np
from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import (AutocompleteInput, ColumnDataSource, CustomJS, Div, HoverTool, Legend,
                          LegendItem, Range1d)
from bokeh.plotting import figure
from bokeh.resources import INLINE

from jatlas import files
from jatlas.atlas.draw import (HIGHLIGHT_COLOUR, NODE_COLOUR, edge_alpha, edge_groups,
                               relation_colour)
from jatlas.atlas.layout import as_digraph, positions, tree_layout

MAX_PARENTS_SHOWN = 6
# Field tags of the hover card (inline styles: bokeh's tooltip sanitiser drops <style>).
DOCUMENTED_TAG = "<td style='color:#1a7f37'>documented"
INFERRED_TAG = "<td style='color:#b35900;font-style:italic'>inferred"
HEAD = "<div style='color:#666'>"

# Finds the typed id (exact, else the first id containing it, case-insensitively),
# rings and selects it and zooms to a window around it.
SEARCH_JS = """
const esc = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const q = (cb_obj.value || '').trim().toLowerCase();
const ids = nodes.data.id;
let i = ids.findIndex((s) => s.toLowerCase() === q);
if (i < 0 && q) i = ids.findIndex((s) => s.toLowerCase().includes(q));
if (i < 0) {
  found.data = {x: [], y: []};
  nodes.selected.indices = [];
  status.text = q ? `no model id contains "${esc(q)}"` : '';
  return;
}
const x = nodes.data.x[i], y = nodes.data.y[i];
found.data = {x: [x], y: [y]};
nodes.selected.indices = [i];
xr.start = x - half_w; xr.end = x + half_w;
yr.start = y - half_h; yr.end = y + half_h;
status.text = `found <b>${esc(ids[i])}</b>`;
"""

# A link to the page can name a model: atlas.html#find=<id> opens zoomed to it.
HASH_JS = """
const m = window.location.hash.match(/^#find=(.+)$/);
if (m) search.value = decodeURIComponent(m[1]);
"""


def _value(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)


def _fields_html(name: str, fields: dict, documented: set) -> str:
  rows = [f"<tr><td>{html.escape(str(k))}<td><b>{html.escape(_value(v))}</b>"
          + (DOCUMENTED_TAG if k in documented else INFERRED_TAG) for k, v in fields.items()]
  return f"{HEAD}{name}</div><table>{''.join(rows)}</table>" if rows else ""


def _edge_html(parent, d: dict) -> str:
  rel = d.get("relation")
  return (f"{html.escape(str(parent))} &rarr; <span style='color:{relation_colour(rel)}'>"
          f"{html.escape(str(rel))}</span>, {html.escape(str(d.get('provenance')))}, "
          f"confidence {_value(d.get('confidence'))}")


def _parents_html(g, v) -> str:
  edges = list(g.in_edges(v, data=True))
  lines = [_edge_html(p, d) for p, _, d in edges[:MAX_PARENTS_SHOWN]]
  if len(edges) > MAX_PARENTS_SHOWN:
    lines.append(f"... {len(edges) - MAX_PARENTS_SHOWN} more")
  head = f"{HEAD}parents</div>" if lines else ""
  return f"{head}{'<br>'.join(lines)}{HEAD}{g.out_degree(v)} children</div>"


def node_info_html(g, v) -> str:
  """The hover card of model v: id, source, meta and traits (documented / inferred),
  parent edges."""
  d = g.nodes[v]
  documented = set(d.get("documented") or ())
  src = d.get("source") or {}
  src_txt = ", ".join(f"{k}={_value(x)}" for k, x in src.items()) if src else "unknown"
  head = f"<b>{html.escape(str(v))}</b>"
  if d.get("placeholder"):
    head += " <i>(placeholder: a parent absent from the data)</i>"
  return (f"{head}<div>source: {html.escape(src_txt)}</div>"
          + _fields_html("meta", d.get("meta") or {}, documented)
          + _fields_html("traits", d.get("traits") or {}, documented)
          + _parents_html(g, v))


def _node_source(g, nodes, xy_N2) -> ColumnDataSource:
  hollow = [bool(g.nodes[v].get("placeholder")) for v in nodes]
  return ColumnDataSource({
      "x": xy_N2[:, 0], "y": xy_N2[:, 1], "id": [str(v) for v in nodes],
      "info": [node_info_html(g, v) for v in nodes],
      "fill": ["white" if h else NODE_COLOUR for h in hollow]})


def _edge_renderers(p, groups: dict, width: float) -> list[LegendItem]:
  """A segment glyph per group, and an invisible marker at every edge's midpoint that
  carries the edge's hover card (hovering the segments themselves would stack the
  cards of every edge meeting at a model)."""
  items = []
  for (rel, prov), grp in groups.items():
    seg = grp["seg_E22"]
    conf = [math.nan if c is None else float(c) for c in grp["confidence"]]
    src = ColumnDataSource({
        "x0": seg[:, 0, 0], "y0": seg[:, 0, 1], "x1": seg[:, 1, 0], "y1": seg[:, 1, 1],
        "xm": seg[:, :, 0].mean(1), "ym": seg[:, :, 1].mean(1),
        "parent": [str(v) for v in grp["parent"]], "child": [str(v) for v in grp["child"]],
        "confidence": conf, "alpha": [edge_alpha(c) for c in grp["confidence"]]})
    r = p.segment("x0", "y0", "x1", "y1", source=src, line_color=relation_colour(rel),
                  line_alpha="alpha", line_width=width,
                  line_dash="solid" if prov == "documented" else [6, 3])
    mid = p.scatter("xm", "ym", source=src, size=9, fill_alpha=0, line_alpha=0,
                    hover_fill_color=relation_colour(rel), hover_fill_alpha=1)
    p.add_tools(HoverTool(renderers=[mid], tooltips=(
        f"@parent &rarr; @child<br><b>{html.escape(rel)}</b>, {html.escape(prov)}, "
        "confidence @confidence{0.000}")))
    items.append(LegendItem(label=f"{rel} ({prov})", renderers=[r, mid]))
  return items


def _ranges(xy_N2: np.ndarray) -> tuple[Range1d, Range1d]:
  if not len(xy_N2):
    return Range1d(-1, 1), Range1d(-1, 1)
  lo, hi = xy_N2.min(0) - 1.5, xy_N2.max(0) + 1.5
  return Range1d(lo[0], hi[0]), Range1d(lo[1], hi[1])


def _node_renderer(p, g, nodes, xy_N2, size: float) -> tuple[ColumnDataSource, list]:
  """The models' scatter (hover: their cards) and its legend items."""
  src = _node_source(g, nodes, xy_N2)
  r = p.scatter("x", "y", source=src, size=size, fill_color="fill", line_color=NODE_COLOUR,
                line_width=1)
  p.add_tools(HoverTool(renderers=[r], tooltips="<div style='max-width:460px'>@info{safe}</div>"))
  fill = src.data["fill"]
  items = [LegendItem(label=label, renderers=[r], index=fill.index(colour))
           for label, colour in (("model", NODE_COLOUR), ("placeholder (absent)", "white"))
           if colour in fill]
  return src, items


def _search_row(nodes, nodes_src, found, xr, yr):
  """The id box (suggests ids; on Enter finds, rings and zooms) and its status line."""
  status = Div(text="", styles={"padding-top": "6px"})
  search = AutocompleteInput(completions=[str(v) for v in nodes], search_strategy="includes",
                             case_sensitive=False, min_characters=2, max_completions=20,
                             restrict=False, placeholder="find a model by id", width=420)
  search.js_on_change("value", CustomJS(
      args=dict(nodes=nodes_src, found=found, status=status, xr=xr, yr=yr, half_w=12, half_h=6),
      code=SEARCH_JS))
  return search, row(search, status)


def atlas_document(atlas, *, title: str = "Model Atlas", pos: dict | None = None) -> Document:
  """The bokeh Document of the page: the search row above the plot."""
  g = as_digraph(atlas)
  pos = tree_layout(g) if pos is None else pos
  nodes = list(g.nodes)
  xy_N2 = positions(g, pos)
  xr, yr = _ranges(xy_N2)
  p = figure(title=f"{title}: {len(nodes)} models, {g.number_of_edges()} edges",
             x_range=xr, y_range=yr, output_backend="webgl", sizing_mode="stretch_both",
             tools="pan,wheel_zoom,box_zoom,tap,reset,save", active_scroll="wheel_zoom")
  p.axis.visible = False
  p.grid.visible = False
  slot_px = 950.0 / (xr.end - xr.start)  # a layout slot on a ~1000 px wide plot
  items = _edge_renderers(p, edge_groups(g, pos), float(np.clip(0.15 * slot_px, 1.0, 1.8)))
  nodes_src, node_items = _node_renderer(p, g, nodes, xy_N2, float(np.clip(0.6 * slot_px, 3, 9)))
  found = ColumnDataSource({"x": [], "y": []})
  p.scatter("x", "y", source=found, size=24, fill_color=None, line_color=HIGHLIGHT_COLOUR,
            line_width=3)
  if items or node_items:
    p.add_layout(Legend(items=items + node_items, click_policy="hide",
                        title="edges (dashed: recovered)"), "right")
  search, search_row = _search_row(nodes, nodes_src, found, xr, yr)
  doc = Document()
  doc.add_root(column(search_row, p, sizing_mode="stretch_both"))
  doc.js_on_event("document_ready", CustomJS(args=dict(search=search), code=HASH_JS))
  return doc


def write_page(atlas, path: str, *, title: str = "Model Atlas", pos: dict | None = None) -> None:
  """Writes the atlas page to `path`: one HTML file that opens offline."""
  page = file_html(atlas_document(atlas, title=title, pos=pos), resources=INLINE, title=title)
  with files.atomic_path(os.fspath(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
    f.write(page)
