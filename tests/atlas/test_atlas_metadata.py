"""Atlases from documented metadata: the HF lineage sample, planted cycles, JSONL, cards."""
import json
import os
import random

import pandas as pd
import pytest

from jatlas.atlas import from_metadata
from jatlas.atlas.from_metadata import from_cards, from_csv, from_hub, from_jsonl, tag_parents
from jatlas.io.card import parse_card

# the repo's copy of a real Hub lineage dump (model, base models, relation)
SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "data", "hf_lineage_sample.csv")


@pytest.fixture(scope="module")
def sample():
  raw = pd.read_csv(SAMPLE, keep_default_na=False)
  bases = {m.strip(): set() for m in raw.current_model}
  for m, b in zip(raw.current_model, raw.base_model):
    bases[m.strip()] |= {p.strip() for p in b.split(",") if p.strip()}
  return raw, bases, from_csv(SAMPLE)


def test_sample_models_parents_and_placeholders(sample):
  raw, bases, atlas = sample
  parents = set().union(*bases.values())
  assert set(atlas.placeholders()) == parents - set(bases)
  assert len(atlas.placeholders()) == 211
  assert len(atlas) == len(set(bases) | parents)
  for m, want in bases.items():
    assert set(atlas.graph.predecessors(m)) == want - {m}, m
  assert all(atlas.node(p)["source"] == {"kind": "hub", "repo_id": p}
             for p in atlas.placeholders())
  assert atlas.validate() == []


def test_sample_merges_keep_every_parent(sample):
  raw, bases, atlas = sample
  merges = {m for m, b in bases.items() if len(b - {m}) >= 2}
  merge_children = {c for _, c, r in atlas.graph.edges(data="relation") if r == "merge"}
  assert merge_children == merges and len(merges) == 78
  assert atlas.relation_counts()["merge"] == sum(len(bases[m]) for m in merges) == 247
  documented = set(raw.current_model[raw.base_model_relation == "merge"])
  assert len(documented) == 76 and documented <= merges
  for m in merges:  # two unknown_annotated rows list two bases: merges, inferred
    assert ("relation" in atlas.node(m)["documented"]) == (m in documented)
  big = max(merges, key=lambda m: len(bases[m]))
  assert len(atlas.parents(big)) == 17


def test_sample_single_parents_are_inferred_finetunes_and_self_loops_dropped(sample):
  raw, bases, atlas = sample
  node = atlas.node("01-ai/Yi-1.5-9B-Chat-16K")
  assert atlas.parents("01-ai/Yi-1.5-9B-Chat-16K") == ["01-ai/Yi-1.5-9B-Chat"]
  assert node["meta"] == {"base_model_relation": "unknown_annotated", "relation": "finetune"}
  assert node["documented"] == ["base_model_relation"]
  self_loops = sorted(m for m, b in bases.items() if m in b)
  dropped = atlas.graph.graph["dropped_edges"]
  assert sorted(d["child"] for d in dropped) == self_loops and len(self_loops) == 3
  assert {d["reason"] for d in dropped} == {"self-loop"}


def _write_csv(path, rows):
  pd.DataFrame(rows, columns=["current_model", "base_model", "base_model_relation"]).to_csv(
      path, index=False)
  return str(path)


CYCLE_ROWS = [("b", "a", "finetune"), ("c", "b", "finetune"), ("a", "c", "finetune"),
              ("d", "c", ""), ("x", "y,d", "merge"), ("y", "x", "fine-tune")]


def test_planted_cycles_are_reported_and_broken_deterministically(tmp_path):
  first = None
  for seed in range(4):  # the same edges are dropped whatever the row order
    rows = list(CYCLE_ROWS)
    random.Random(seed).shuffle(rows)
    atlas = from_csv(_write_csv(tmp_path / f"cycle{seed}.csv", rows))
    dropped = atlas.graph.graph["dropped_edges"]
    # order (child, position in its list): a<-c, b<-a kept, c<-b closes a->b->c->a;
    # x<-y kept, x<-d kept, y<-x closes x->y->x
    assert dropped == [{"parent": "b", "child": "c", "relation": "finetune", "reason": "cycle"},
                       {"parent": "x", "child": "y", "relation": "finetune", "reason": "cycle"}]
    assert atlas.validate() == []
    edges = sorted(atlas.graph.edges(data="relation"))
    first = first or edges
    assert edges == first
  assert ("c", "a", "finetune") in first and ("y", "x", "merge") in first


def test_relation_rules(tmp_path):
  rows = [("m1", "p", "merge"),          # a merge of one base: inferred finetune
          ("m2", "p,q", ""),             # missing, two bases: inferred merge
          ("m3", "p", "unknown"),        # no relation: inferred finetune
          ("m4", "p", "Fine-Tune"),      # a spelling of finetune: documented
          ("m5", "p", "quantized"), ("m6", "p,q", "merge"), ("m7", "", "source")]
  atlas = from_csv(_write_csv(tmp_path / "rel.csv", rows))
  rel = {c: r for _, c, r in atlas.graph.edges(data="relation")}
  assert rel == {"m1": "finetune", "m2": "merge", "m3": "finetune", "m4": "finetune",
                 "m5": "quantized", "m6": "merge"}
  inferred = {m for m in rel if "relation" not in atlas.node(m)["documented"]}
  assert inferred == {"m1", "m2", "m3"}
  assert atlas.node("m7")["meta"] == {"base_model_relation": "source"}
  assert atlas.placeholders() == ["p", "q"]
  assert atlas.graph.in_degree("m7") == 0


def test_jsonl_matches_csv_and_keeps_extra_fields(tmp_path):
  path = tmp_path / "lineage.jsonl"
  lines = [{"current_model": c, "base_model": b.split(",") if "," in b else b,
            "base_model_relation": r, "license": "mit"} for c, b, r in CYCLE_ROWS]
  path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
  a = from_jsonl(str(path))
  b = from_csv(_write_csv(tmp_path / "same.csv", CYCLE_ROWS))
  assert sorted(a.graph.edges(data="relation")) == sorted(b.graph.edges(data="relation"))
  assert a.graph.graph["dropped_edges"] == b.graph.graph["dropped_edges"]
  assert a.node("x")["meta"]["license"] == "mit" and "license" in a.node("x")["documented"]
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"current_model": "a", "base_model": "b"}\n{oops\n')
  with pytest.raises(ValueError, match="bad.jsonl line 2: not JSON"):
    from_jsonl(str(bad))


def test_missing_columns_are_named(tmp_path):
  path = tmp_path / "wrong.csv"
  path.write_text("model,parent\na,b\n")
  with pytest.raises(ValueError, match=r"missing columns \['current_model', 'base_model'\]"):
    from_csv(str(path))


CARD_LIST = """---
base_model:
- org/a
- org/b
base_model_relation: merge
license: apache-2.0
---
# merged
"""
CARD_TAGS = """---
license: mit
tags:
- text-generation
- base_model:org/base
- base_model:quantized:org/base
---
"""
CARD_BOTH = """---
base_model: org/base
tags:
- base_model:adapter:org/base
pipeline_tag: text-generation
---
"""


def test_tags_parse():
  assert tag_parents(["x", "base_model:org/m", "base_model:finetune:org/m",
                      "base_model:merge:org/n"]) == [("org/m", "finetune"), ("org/n", "merge")]


def test_cards_fields_then_tags():
  cards = {"org/merged": parse_card(CARD_LIST), "org/q": parse_card(CARD_TAGS),
           "org/lora": parse_card(CARD_BOTH), "org/a": parse_card("# no metadata")}
  atlas = from_cards(cards)
  assert sorted(atlas.graph.edges(data="relation")) == [
      ("org/a", "org/merged", "merge"), ("org/b", "org/merged", "merge"),
      ("org/base", "org/lora", "adapter"), ("org/base", "org/q", "quantized")]
  assert atlas.placeholders() == ["org/b", "org/base"]
  assert atlas.node("org/merged")["meta"]["license"] == "apache-2.0"
  assert atlas.node("org/lora")["meta"] == {"pipeline_tag": "text-generation",
                                            "relation": "adapter"}
  assert "relation" in atlas.node("org/q")["documented"]  # the tag documents it


def test_from_hub_reads_each_card(monkeypatch):
  from jatlas.io import hub
  cards = {"org/lora": CARD_BOTH, "org/base": "---\nlicense: mit\n---\n"}
  seen = []

  def read_card(repo_id, **kwargs):
    seen.append((repo_id, kwargs))
    return parse_card(cards[repo_id])
  monkeypatch.setattr(hub, "read_card", read_card)
  atlas = from_hub(["org/lora", "org/base"], revision="main")
  assert seen == [("org/lora", {"revision": "main"}), ("org/base", {"revision": "main"})]
  assert atlas.placeholders() == [] and atlas.parents("org/lora") == ["org/base"]
  assert from_metadata.atlas_relation("LoRA") == "adapter"
