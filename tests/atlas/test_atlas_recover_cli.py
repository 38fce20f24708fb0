"""`jatlas atlas recover` on two tiny zoos (two roots and their fine-tunes), in-process."""
import json
import os
import sys

import pytest

from jatlas.atlas import Atlas, from_zoo
from jatlas.cli import main
from jatlas.zoo import train_zoo

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "zoo"))
from tiny_config import make_tiny_config  # noqa: E402  the zoo tests' tiny MLP zoo


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
  """Two roots (2 epochs, saved at 0 and 2) and 6 fine-tunes, 3 from each root."""
  root = tmp_path_factory.mktemp("recover_zoos")
  kw = {"epochs": (2,), "save_epochs": (0, 2)}
  base = train_zoo(make_tiny_config(members=2, **kw), str(root / "roots"), progress=False)
  kids = train_zoo(make_tiny_config(members=6, parent=base.dir, lr=(1e-3,), seed=1, **kw),
                   str(root / "kids"), progress=False)
  return base, kids


def _root_of(atlas: Atlas, node: str) -> str:
  while atlas.parents(node):
    node = atlas.parents(node)[0]
  return node


def test_recover_charts_final_checkpoints_from_weights(zoos, tmp_path, capsys):
  base, kids = zoos
  out = str(tmp_path / "rec.json")
  main(["atlas", "recover", base.dir, kids.dir, "--out", out])
  assert "recovered by jatlas" in capsys.readouterr().out
  rec, true = Atlas.load(out), from_zoo([base.dir, kids.dir], final_only=True)
  assert sorted(rec.graph.nodes) == sorted(true.graph.nodes)
  assert len(rec) == 2 + 6 and all(n.startswith(("roots/", "kids/")) for n in rec.graph.nodes)
  assert rec.graph.graph["provenance"] == "recovered" and rec.graph.graph["method"] == "jatlas"
  edges = rec.edges_table()
  assert (edges.provenance == "recovered").all() and edges.confidence.between(0, 1).all()
  assert rec.validate() == []
  # the two trees are told apart: every recovered edge stays inside one true tree
  for p, c in rec.graph.edges:
    assert _root_of(true, p) == _root_of(true, c), (p, c)
  # the node's source is the zoo row, as `atlas build --from-zoo` records it
  node = next(iter(rec.graph.nodes))
  assert rec.node(node)["source"] == true.node(node)["source"]


def test_rows_and_method_options(zoos, tmp_path, capsys):
  base, kids = zoos
  out = str(tmp_path / "all.json")
  main(["atlas", "recover", base.dir, kids.dir, "--out", out, "--rows", "all",
        "--method", "mother"])
  rec = Atlas.load(out)
  assert len(rec) == len(base.table) + len(kids.table) == 2 * 2 + 6 * 2  # epochs 0 and 2
  assert rec.graph.graph["method"] == "mother"
  assert set(rec.edges_table().relation) == {"finetune"}
  picked = [f"kids/{i}" for i in kids.table.id[kids.table.final][:3]]
  main(["atlas", "recover", kids.dir, "--out", out, "--rows", *picked])
  assert all(e["provenance"] == "recovered" for e in json.load(open(out))["edges"])
  assert sorted(Atlas.load(out).graph.nodes) == sorted(picked)
  with pytest.raises(SystemExit, match="unknown model 'kids/nope'"):
    main(["atlas", "recover", kids.dir, "--out", out, "--rows", "kids/nope"])
  with pytest.raises(SystemExit, match="not a zoo"):
    main(["atlas", "recover", str(tmp_path), "--out", out])
  capsys.readouterr()
