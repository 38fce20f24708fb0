"""`jatlas atlas impute|plot` in-process on a small hand-made atlas."""
import pytest
from PIL import Image

from jatlas.atlas.graph import Atlas
from jatlas.cli import main


def _family(tmp_path):
  """Two trees; license inherited down each, one child's license and trait missing."""
  a = Atlas()
  for root, lic in (("r1", "mit"), ("r2", "apache-2.0")):
    a.add_node(root, meta={"license": lic}, traits={"test_acc": 0.9})
    for i in range(4):
      child = f"{root}/c{i}"
      if child == "r1/c3":
        a.add_node(child)
      else:
        a.add_node(child, meta={"license": lic}, traits={"test_acc": 0.8 + 0.01 * i})
      a.add_edge(root, child, "finetune")
  path = tmp_path / "atlas.json"
  a.save(str(path))
  return path


def test_impute_fills_from_the_tree_and_marks_it_inferred(tmp_path, capsys):
  path = _family(tmp_path)
  out = tmp_path / "filled.json"
  main(["atlas", "impute", str(path), "--out", str(out), "--fields", "license", "test_acc"])
  assert "2 values imputed" in capsys.readouterr().out
  node = Atlas.load(str(out)).node("r1/c3")
  assert node["meta"]["license"] == "mit"  # its tree's license, not the other tree's
  assert 0.8 <= node["traits"]["test_acc"] <= 0.9
  assert "license" not in node["documented"] and "test_acc" not in node["documented"]
  with pytest.raises(SystemExit, match="licence|license"):
    main(["atlas", "impute", str(path), "--out", str(out), "--fields", "licence"])


def test_plot_writes_a_figure_and_a_page(tmp_path, capsys):
  path = _family(tmp_path)
  png, html = tmp_path / "atlas.png", tmp_path / "atlas.html"
  main(["atlas", "plot", str(path), "--out", str(png), "--highlight", "r1/c3"])
  main(["atlas", "plot", str(path), "--out", str(html)])
  assert "wrote" in capsys.readouterr().out
  assert min(Image.open(png).size) > 200
  text = html.read_text()
  assert "r1/c3" in text and '<script src="http' not in text
  with pytest.raises(SystemExit, match="r1/c9"):
    main(["atlas", "plot", str(path), "--out", str(png), "--highlight", "r1/c9"])
