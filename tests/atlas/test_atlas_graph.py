"""The Atlas graph: typed nodes and edges, validation, tables, JSON/GraphML round trip."""
import json
import math

import pytest

from jatlas.atlas.graph import RELATIONS, Atlas, UnknownNodeError


def small_atlas() -> Atlas:
  a = Atlas()
  a.add_node("base", source={"kind": "hub", "repo_id": "org/base"},
             traits={"test_acc": 0.5, "loss": float("nan")},
             meta={"license": "mit", "tags": ("a", "b"), "nested": {"x": [1, 2]}})
  a.add_node("ft", source={"kind": "zoo", "dir": "/runs/ft", "row": 3},
             traits={"test_acc": 0.1 + 0.2}, meta={"task": "pair:0-1"}, documented=["task"])
  a.add_node("q", source={"kind": "file", "path": "/tmp/q.safetensors"})
  a.add_node("other")
  a.add_node("merged", placeholder=True)
  a.add_edge("base", "ft", "finetune")
  a.add_edge("ft", "q", "quantized", provenance="recovered", confidence=0.25)
  a.add_edge("ft", "merged", "merge", provenance="recovered", confidence=1 / 3)
  a.add_edge("other", "merged", "merge")
  a.graph.graph["dropped_edges"] = [{"parent": "q", "child": "base", "reason": "cycle"}]
  return a


def _state(a: Atlas):
  """Everything an atlas holds, in order, NaN made comparable."""
  def fix(v):
    return "NaN" if isinstance(v, float) and math.isnan(v) else v
  nodes = [(n, json.dumps(d, sort_keys=True, default=fix).replace("NaN", '"NaN"'))
           for n, d in a.graph.nodes(data=True)]
  return nodes, list(a.graph.edges(data=True)), dict(a.graph.graph)


def test_nodes_keep_fields_and_documented_marks():
  a = small_atlas()
  ft = a.node("ft")
  assert ft["documented"] == ["task"]  # test_acc was given but not documented: inferred
  assert a.node("base")["documented"] == ["license", "loss", "nested", "tags", "test_acc"]
  assert a.node("base")["meta"]["tags"] == ["a", "b"]
  a.add_node("ft", traits={"val_acc": 0.7}, documented=[])  # an imputed trait
  assert a.node("ft")["traits"] == {"test_acc": 0.1 + 0.2, "val_acc": 0.7}
  assert a.node("ft")["documented"] == ["task"]
  a.add_node("merged", meta={"license": "mit"})  # described now: no longer a placeholder
  assert a.placeholders() == [] and a.node("merged")["meta"] == {"license": "mit"}


def test_bad_arguments_are_named():
  a = small_atlas()
  with pytest.raises(ValueError, match=r"relation 'finetuned'.*did you mean 'finetune'"):
    a.add_edge("base", "q", "finetuned")
  with pytest.raises(ValueError, match="provenance 'guessed'"):
    a.add_edge("base", "q", "finetune", provenance="guessed")
  with pytest.raises(ValueError, match=r"confidence 1.5 outside \[0, 1\]"):
    a.add_edge("base", "q", "finetune", confidence=1.5)
  with pytest.raises(UnknownNodeError, match=r"unknown node\(s\) \['bsae'\].*'base'"):
    a.add_edge("bsae", "q", "finetune")
  with pytest.raises(ValueError, match="source kind 'web'"):
    a.add_node("x", source={"kind": "web"})
  with pytest.raises(TypeError, match=r"meta\.when: date datetime.date"):
    import datetime
    a.add_node("x", meta={"when": datetime.date(2025, 1, 1)})
  with pytest.raises(UnknownNodeError, match="unknown model 'merge'.*'merged'"):
    a.require("merge")


def test_validate_is_empty_on_a_good_atlas_and_catches_each_problem():
  a = small_atlas()
  assert a.validate() == []
  a.graph.add_edge("q", "base", relation="finetune", provenance="documented", confidence=1.0)
  a.graph.add_edge("lonely_parent", "half_merge", relation="merge", provenance="documented",
                   confidence=1.0)
  a.graph.add_edge("p1", "two_parents", relation="finetune", provenance="documented",
                   confidence=1.0)
  a.graph.add_edge("p2", "two_parents", relation="adapter", provenance="documented",
                   confidence=1.0)
  a.graph.add_edge("p2", "odd", relation="distilled", provenance="hunch", confidence=1.0)
  a.graph.add_edge("loop", "loop", relation="finetune", provenance="documented", confidence=1.0)
  problems = a.validate()
  assert problems[:2] == ["cycle: base -> ft -> q -> base", "cycle: loop -> loop"]
  rest = "\n".join(problems[2:])
  assert "edge 'p2' -> 'odd': unknown relation 'distilled'" in rest
  assert "edge 'p2' -> 'odd': unknown provenance 'hunch'" in rest
  assert "merge child 'half_merge' has 1 merge parent(s)" in rest
  assert "child 'two_parents' has 2 parents ['p1', 'p2']" in rest
  assert len(problems) == 6


def test_tables():
  a = small_atlas()
  nodes = a.nodes_table()
  assert list(nodes.id) == ["base", "ft", "q", "other", "merged"]
  assert list(nodes.columns[:5]) == ["id", "placeholder", "source_kind", "parents", "children"]
  assert nodes.set_index("id").loc["merged", "parents"] == 2
  assert nodes.set_index("id").loc["ft", "task"] == "pair:0-1"
  assert list(nodes.source_kind.fillna("-")) == ["hub", "zoo", "file", "-", "-"]
  edges = a.edges_table()
  assert list(edges.columns) == ["parent", "child", "relation", "provenance", "confidence"]
  assert edges.relation.tolist() == ["finetune", "quantized", "merge", "merge"]
  assert edges.confidence.tolist() == [1.0, 0.25, 1 / 3, 1.0]
  assert a.relation_counts() == {"finetune": 1, "quantized": 1, "merge": 2}
  assert a.summary() == ("5 nodes (1 placeholders), 4 edges (finetune 1, quantized 1, merge 2), "
                         "1 cycle edges dropped")
  assert set(RELATIONS) >= set(edges.relation)


@pytest.mark.parametrize("suffix", [".json", ".graphml"])
def test_round_trip_is_exact(tmp_path, suffix):
  a = small_atlas()
  path = str(tmp_path / f"atlas{suffix}")
  a.save(path)
  b = Atlas.load(path)
  assert _state(b) == _state(a)
  assert b.node("ft")["traits"]["test_acc"] == 0.1 + 0.2  # floats to the last bit
  assert [p.name for p in tmp_path.iterdir()] == [f"atlas{suffix}"]  # no temporary left
  b.save(path)
  assert _state(Atlas.load(path)) == _state(a)


def test_json_file_has_the_documented_schema(tmp_path):
  small_atlas().save(str(tmp_path / "a.json"))
  obj = json.loads((tmp_path / "a.json").read_text())
  assert set(obj) == {"nodes", "edges", "graph"}
  assert set(obj["edges"][0]) == {"parent", "child", "relation", "provenance", "confidence"}
  assert set(obj["nodes"][0]) == {"id", "source", "traits", "meta", "documented", "placeholder"}


def test_load_refuses_unknown_suffix_and_missing_file(tmp_path):
  with pytest.raises(ValueError, match=r"suffix '.gexf'"):
    small_atlas().save(str(tmp_path / "a.gexf"))
  with pytest.raises(FileNotFoundError, match="not found"):
    Atlas.load(str(tmp_path / "none.json"))
