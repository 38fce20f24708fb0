"""`jatlas atlas build|show|compare` in-process, and compare() on hand-made atlas pairs."""
import json
import math

import pandas as pd
import pytest

from jatlas.atlas.compare import compare, edge_scores
from jatlas.atlas.graph import Atlas
from jatlas.cli import main


def _atlas(edges, nodes=()):
  a = Atlas()
  for n in sorted({*nodes, *(e[0] for e in edges), *(e[1] for e in edges)}):
    a.add_node(n)
  for p, c, r in edges:
    a.add_edge(p, c, r, provenance="recovered")
  return a


TRUE = [("r", "a", "finetune"), ("r", "b", "finetune"), ("a", "c", "finetune"),
        ("a", "d", "finetune"), ("c", "q1", "quantized"), ("d", "q2", "quantized"),
        ("b", "m", "merge"), ("c", "m", "merge"), ("a", "n", "merge"), ("d", "n", "merge")]


def test_compare_counts_placement_direction_and_type():
  recovered = [("r", "a", "finetune"),   # right
               ("b", "r", "finetune"),   # reversed: placed, wrong direction
               ("c", "a", "finetune"),   # reversed
               ("r", "d", "finetune"),   # wrong parent: a -> d missed
               ("c", "q1", "finetune"),  # right edge, wrong type
               ("q2", "d", "quantized"),  # reversed
               ("b", "m", "merge"), ("c", "m", "merge"),  # merge m right
               ("a", "n", "merge"), ("n", "d", "finetune")]  # merge n: d linked but reversed
  table = compare(_atlas(TRUE), _atlas(recovered))
  assert list(table.index) == ["finetune", "quantized", "merge", "all"]
  assert table.true_edges.tolist() == [4, 2, 4, 10]
  assert table.recovered_edges.tolist() == [6, 1, 3, 10]
  assert table.loc["finetune"].placement == 3 / 4 and table.loc["finetune"].direction == 1 / 4
  assert table.loc["finetune"].typed == 1 / 4
  assert table.loc["quantized"].tolist()[2:] == [1.0, 0.5, 0.0]
  # m: parents {b, c} exact; n: {a, d} both linked, recovered parents {a} within -> placed only
  assert table.loc["merge"].tolist()[2:] == [1.0, 0.5, 0.5]
  assert table.loc["all"].placement == 9 / 10 and table.loc["all"].direction == 4 / 10
  assert table.loc["all"].typed == 3 / 10


def test_compare_edge_cases():
  perfect = compare(_atlas(TRUE), _atlas(TRUE))
  assert (perfect[["placement", "direction", "typed"]] == 1.0).all().all()
  empty = compare(_atlas(TRUE), _atlas([]))
  assert (empty[["placement", "direction", "typed"]] == 0.0).all().all()
  # a merge child with an extra recovered parent is wrong even for placement
  extra = compare(_atlas(TRUE), _atlas([*TRUE, ("r", "m", "merge")]))
  assert extra.loc["merge"].tolist()[2:] == [0.5, 0.5, 0.5]
  nothing = compare(_atlas([], nodes=["x"]), _atlas([]))
  assert list(nothing.index) == ["all"] and nothing.loc["all"].true_edges == 0
  assert math.isnan(nothing.loc["all"].placement)
  scores = edge_scores(_atlas(TRUE), _atlas([("a", "r", "finetune")]))
  assert len(scores) == len(TRUE)
  row = scores.set_index(["parent", "child"]).loc[("r", "a")]
  assert row.tolist() == ["finetune", True, False, False]


SAMPLE_ROWS = [("org/base", "", "source"), ("org/ft", "org/base", "finetune"),
               ("org/ft2", "org/base", "finetune"), ("org/q", "org/ft", "quantized"),
               ("org/m", "org/ft,org/ft2", "merge"), ("org/loop", "org/loop", "")]


@pytest.fixture
def built(tmp_path, capsys):
  csv = tmp_path / "lineage.csv"
  table = pd.DataFrame(SAMPLE_ROWS, columns=["current_model", "base_model", "base_model_relation"])
  table["license"] = "mit"
  table.to_csv(csv, index=False)
  out = tmp_path / "atlas.json"
  main(["atlas", "build", "--from-csv", str(csv), "--out", str(out)])
  return out, capsys.readouterr().out


def test_build_prints_a_summary_and_writes_the_atlas(built):
  out, printed = built
  assert printed.strip() == (f"atlas {out}: 6 nodes (0 placeholders), 5 edges "
                             "(finetune 2, quantized 1, merge 2), 1 cycle edges dropped")
  atlas = Atlas.load(str(out))
  assert sorted(atlas.graph.edges) == [("org/base", "org/ft"), ("org/base", "org/ft2"),
                                      ("org/ft", "org/m"), ("org/ft", "org/q"),
                                      ("org/ft2", "org/m")]


def test_build_from_jsonl_to_graphml(tmp_path, capsys):
  path = tmp_path / "l.jsonl"
  path.write_text("\n".join(json.dumps({"current_model": c, "base_model": b})
                            for c, b, _ in SAMPLE_ROWS[:3]))
  main(["atlas", "build", "--from-jsonl", str(path), "--out", str(tmp_path / "a.graphml")])
  assert "3 nodes (0 placeholders), 2 edges (finetune 2)" in capsys.readouterr().out
  assert len(Atlas.load(str(tmp_path / "a.graphml"))) == 3
  with pytest.raises(SystemExit, match="give a source"):
    main(["atlas", "build", "--out", str(tmp_path / "b.json")])


def test_show_prints_family_and_best_in_tree(built, capsys):
  out, _ = built
  atlas = Atlas.load(str(out))
  atlas.add_node("org/ft2", traits={"test_acc": 0.91}, documented=[])
  atlas.add_node("org/q", traits={"test_acc": 0.75})
  atlas.save(str(out))
  main(["atlas", "show", str(out), "org/ft"])
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "org/ft"
  assert "    license: mit" in lines and "    relation: finetune" in lines
  i = lines.index("  parents: 1")
  assert lines[i + 1] == "    org/base  finetune (documented)"
  j = lines.index("  children: 2")
  assert lines[j + 1:j + 3] == ["    org/m  merge (documented)",
                                "    org/q  quantized (documented)"]
  assert lines[-3:] == ["  root: org/base", "  tree size: 5",
                        "  best in tree by test_acc: org/ft2 (0.91)"]
  main(["atlas", "show", str(out), "org/ft2"])
  assert "    test_acc: 0.91  (inferred)" in capsys.readouterr().out
  atlas.add_edge("org/ft", "org/q", "quantized", provenance="recovered", confidence=0.5)
  atlas.add_node("org/q", meta={"relation": "quantized"}, documented=[])
  atlas.save(str(out))
  main(["atlas", "show", str(out), "org/q"])
  assert "    org/ft  quantized (recovered, confidence 0.50, relation inferred)" in \
      capsys.readouterr().out.splitlines()


def test_show_unknown_id_and_missing_file(built, tmp_path):
  out, _ = built
  with pytest.raises(SystemExit, match=r"unknown model 'org/f'.*did you mean 'org/ft'"):
    main(["atlas", "show", str(out), "org/f"])
  with pytest.raises(SystemExit, match="not found"):
    main(["atlas", "show", str(tmp_path / "none.json"), "org/ft"])


def test_compare_command_prints_the_table(tmp_path, capsys):
  true, rec = tmp_path / "true.json", tmp_path / "rec.json"
  _atlas(TRUE).save(str(true))
  _atlas([(c, p, r) if r == "quantized" else (p, c, r) for p, c, r in TRUE]).save(str(rec))
  main(["atlas", "compare", str(true), str(rec)])
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == f"edge accuracy of {rec} against {true}"
  assert lines[1].split() == ["true_edges", "recovered_edges", "placement", "direction", "typed"]
  assert lines[3].split() == ["finetune", "4", "4", "1.000", "1.000", "1.000"]
  assert lines[4].split() == ["quantized", "2", "2", "1.000", "0.000", "0.000"]
  assert lines[-1].split() == ["all", "10", "10", "1.000", "0.800", "0.800"]
