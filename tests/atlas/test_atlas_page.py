"""The interactive atlas page: self-contained HTML, hover cards, and what a person sees
in a browser (headless Chromium screenshots: the graph drawn, search, hover)."""
import re
import shutil
import subprocess

import networkx as nx
import numpy as np
import pytest
from bokeh.resources import INLINE
from PIL import Image

from jatlas.atlas.draw import HIGHLIGHT_COLOUR, RELATION_COLOURS
from jatlas.atlas.page import DOCUMENTED_TAG, INFERRED_TAG, node_info_html, write_page
from test_atlas_draw import toy_graph

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
               None)
PLOT_BOX = (10, 80, 900, 780)  # left, top, right, bottom: inside the plot frame, left of the legend
JS_BYTES = sum(len(s) for s in INLINE.js_raw)  # all of bokeh's bundles, more than a page uses
INFERRED, DOCUMENTED = "#b35900", "#1a7f37"  # colours of the hover card's field tags

# Hovers the middle of the plot frame (where #find= centres the found model), as a
# mouse would: pointer events on bokeh's event element.
HOVER_JS = """<script>
setTimeout(() => {
  const views = [];
  const walk = (v) => { views.push(v); for (const c of (v.child_views || [])) walk(c); };
  for (const v of Object.values(Bokeh.index)) walk(v);
  const pv = views.find((v) => v.frame !== undefined && v.canvas_view !== undefined);
  const el = pv.canvas_view.events_el, r = el.getBoundingClientRect(), f = pv.frame.bbox;
  const at = {clientX: r.left + f.x + f.width / 2, clientY: r.top + f.y + f.height / 2,
              bubbles: true, pointerType: 'mouse', isPrimary: true};
  for (const t of ['pointerenter', 'pointerover', 'pointermove']) {
    el.dispatchEvent(new PointerEvent(t, at));
  }
}, 1500);
</script>"""


def test_page_is_one_offline_file_with_every_model(tmp_path):
  g = toy_graph(trees=3, per_tree=15)
  path = tmp_path / "atlas.html"
  write_page(g, str(path), title="toy atlas")
  text = path.read_text(encoding="utf-8")
  assert re.search(r"<script[^>]*\bsrc=", text) is None  # every script inlined
  assert re.search(r"<link[^>]*href=[\"']?(https?:)?//", text) is None
  assert "<title>toy atlas</title>" in text and "45 models" in text
  assert all(f'"{v}"' in text for v in g)
  assert 1e6 < path.stat().st_size < JS_BYTES + 2_000 * len(g)  # bokeh's JS, then little per model


def test_hover_card_marks_documented_and_inferred_fields():
  g = nx.DiGraph()
  g.add_node("org/base", placeholder=True, source=None)
  g.add_node("org/ft", source={"kind": "hub", "repo_id": "org/ft"}, placeholder=False,
             meta={"license": "mit", "task": "cls"}, traits={"test_acc": 0.91234},
             documented=["license"])
  g.add_edge("org/base", "org/ft", relation="adapter", provenance="recovered", confidence=0.75)
  card = node_info_html(g, "org/ft")
  assert "<b>org/ft</b>" in card and "source: kind=hub, repo_id=org/ft" in card
  assert f"<td>license<td><b>mit</b>{DOCUMENTED_TAG}" in card
  assert f"<td>task<td><b>cls</b>{INFERRED_TAG}" in card
  assert f"<td>test_acc<td><b>0.9123</b>{INFERRED_TAG}" in card
  assert "org/base &rarr;" in card and ">adapter</span>, recovered, confidence 0.75" in card
  base = node_info_html(g, "org/base")
  assert "placeholder" in base and "source: unknown" in base and "1 children" in base


def test_page_of_10k_models_is_written(tmp_path):
  g = toy_graph(trees=100, per_tree=100)
  path = tmp_path / "big.html"
  write_page(g, str(path))
  assert path.stat().st_size < JS_BYTES + 1_000 * len(g)


def _screenshot(folder, html_path, name, fragment=""):
  png = folder / f"{name}.png"
  subprocess.run([BROWSER, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                  f"--user-data-dir={folder / 'profile'}", f"--screenshot={png}",
                  "--window-size=1200,800", "--virtual-time-budget=6000",
                  f"file://{html_path}{fragment}"], check=True, timeout=120,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  left, top, right, bottom = PLOT_BOX
  return np.asarray(Image.open(png).convert("RGB"), float)[top:bottom, left:right]


def _near(rgb_HW3, hex_colour, tol=30):
  target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], float)
  return int((np.abs(rgb_HW3 - target).max(-1) < tol).sum())


TARGET = "org2/m024-finetune"  # a model of toy_graph(6, 30, seed=3) with inferred fields


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
  """Plot areas of screenshots: the page, an empty atlas's page, the page opened with
  #find=<part of TARGET>, and with #find=TARGET and the mouse on it."""
  if BROWSER is None:
    pytest.skip("no chromium/chromium-browser/google-chrome binary on PATH "
                "(Debian: apt-get install chromium)")
  folder = tmp_path_factory.mktemp("shots")
  g = toy_graph(trees=6, per_tree=30, seed=3)
  assert TARGET in g and g.nodes[TARGET]["documented"] == ["license"]
  page = folder / "atlas.html"
  write_page(g, str(page))
  write_page(nx.DiGraph(), str(folder / "empty.html"))
  head, tail = page.read_text(encoding="utf-8").rsplit("</body>", 1)
  (folder / "hover.html").write_text(head + HOVER_JS + "</body>" + tail, encoding="utf-8")
  return {"atlas": _screenshot(folder, page, "atlas"),
          "empty": _screenshot(folder, folder / "empty.html", "empty"),
          "found": _screenshot(folder, page, "found", f"#find={TARGET[:9]}"),
          "hover": _screenshot(folder, folder / "hover.html", "hover", f"#find={TARGET}")}


def test_browser_shows_the_graph_and_not_an_empty_one(shots):
  shot, empty = shots["atlas"], shots["empty"]
  inked, inked_empty = (shot.min(-1) < 200).mean(), (empty.min(-1) < 200).mean()
  assert inked > 0.01 and inked_empty < 0.001, (inked, inked_empty)
  for rel, colour in RELATION_COLOURS.items():
    assert _near(shot, colour) > 30, rel
    assert _near(empty, colour) == 0, rel


def test_browser_search_by_link_rings_the_model(shots):
  assert _near(shots["atlas"], HIGHLIGHT_COLOUR) == 0
  assert _near(shots["found"], HIGHLIGHT_COLOUR) > 30


def test_browser_hover_card_shows_documented_and_inferred(shots):
  for colour in (INFERRED, DOCUMENTED):  # the card's field tags are on screen
    assert _near(shots["found"], colour, tol=20) == 0, colour
    assert _near(shots["hover"], colour, tol=20) > 5, colour
