"""Atlases from documented lineage: CSV/JSONL dumps, Hub model cards.

Every source becomes lineage records (`from_records`): a model id, its base models
(parents) and the documented relation. Rules:
- relation values: finetune, adapter, quantized, merge (plus a few spellings such
  as "fine-tune", "lora", "quantised"); anything else ("unknown",
  "unknown_annotated", "source", "root", "", ...) is undocumented, and is inferred:
  several base models -> merge, one -> finetune. A "merge" with one base model is
  inferred to be a finetune too (a merge has >= 2 parents). The child's meta field
  `relation` holds the atlas relation, documented only when the source gave it
  directly; `base_model_relation` keeps the raw value.
- a model listed in several rows gets the union of their base models and the first
  documented relation.
- base models that are not rows become placeholder nodes (source: the Hub).
- self-loops and cycles are broken deterministically: edges inside a strongly
  connected component are re-added in sorted (child id, position of the parent in
  the child's list) order, and an edge that would close a cycle is dropped.
  Dropped edges are listed in `atlas.graph.graph["dropped_edges"]` ({parent,
  child, relation, reason: "self-loop" | "cycle"}).
- other columns of a dump become documented meta fields of the model.
Hub cards: `base_model` / `base_model_relation`, and tags `base_model:<id>` and
`base_model:<relation>:<id>` (what the Hub adds) where the card carries them; the
card's fields win over its tags.

Usage:
  atlas = from_csv("hf_lineage_sample.csv")   # current_model, base_model, base_model_relation
  atlas = from_jsonl("lineage.jsonl")            # one {"current_model", "base_model", ...} per line
  atlas = from_cards({"org/m": parse_card(readme_text)})
  atlas = from_hub(["org/m", "org/n"])           # jatlas.io.hub.read_card for each
  atlas.graph.graph["dropped_edges"]
"""
import json
from typing import Iterable, Mapping

import networkx as nx
import pandas as pd

from jatlas.atlas.graph import RELATIONS, Atlas

ID_COL, BASE_COL, RELATION_COL = "current_model", "base_model", "base_model_relation"
ALIASES = {"fine-tune": "finetune", "fine_tune": "finetune", "finetuned": "finetune",
           "fine-tuned": "finetune", "lora": "adapter", "peft": "adapter",
           "quantization": "quantized", "quantised": "quantized", "quantize": "quantized",
           "merged": "merge"}
TAG_PREFIX = "base_model:"


def atlas_relation(raw) -> str | None:
  """The atlas relation of a documented value, or None when it says nothing."""
  if not isinstance(raw, str):
    return None
  value = raw.strip().lower()
  value = ALIASES.get(value, value)
  return value if value in RELATIONS else None


def _base_list(value, where: str) -> list[str]:
  """Base model ids from a comma-separated string or a list; blanks dropped."""
  if value is None or (isinstance(value, float) and value != value):
    return []
  if isinstance(value, str):
    value = value.split(",")
  if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
    raise ValueError(f"{where}: {BASE_COL} must be a string or a list of strings, got {value!r}")
  return [v.strip() for v in value if v.strip()]


def _merge_records(records: Iterable[Mapping]) -> dict[str, dict]:
  """{id: {"parents": [(parent, raw relation or None)], "relation", "meta"}}, rows of
  one id combined."""
  merged = {}
  for i, r in enumerate(records):
    node = str(r.get("id") or "").strip()
    if not node:
      raise ValueError(f"record {i}: no model id in {dict(r)!r}")
    rec = merged.setdefault(node, {"parents": [], "relation": None, "meta": {}})
    seen = {p for p, _ in rec["parents"]}
    rec["parents"] += [(p, rel) for p, rel in r.get("parents", ()) if p not in seen]
    if rec["relation"] is None or atlas_relation(rec["relation"]) is None:
      rec["relation"] = r.get("relation") if r.get("relation") not in (None, "") \
          else rec["relation"]
    rec["meta"].update({k: v for k, v in (r.get("meta") or {}).items() if v is not None})
  return merged


def _edge_relations(parents: list, relation) -> tuple[list[str], bool]:
  """Each parent's atlas relation, and whether they were documented."""
  child_rel = atlas_relation(relation)
  rels = [atlas_relation(r) or child_rel for _, r in parents]
  documented = all(rels)
  guess = "merge" if len(parents) > 1 else "finetune"
  rels = [r or guess for r in rels]
  if rels.count("merge") == 1:  # a merge of one listed base: nothing to merge with
    rels, documented = [("finetune" if r == "merge" else r) for r in rels], False
  return rels, documented


def from_records(records: Iterable[Mapping], *, atlas: Atlas | None = None,
                 source_kind: str = "hub") -> Atlas:
  """An atlas from lineage records {"id", "parents": [(parent id, raw relation|None)],
  "relation": raw child relation, "meta": {...}} (see the module docstring)."""
  atlas = Atlas() if atlas is None else atlas
  merged = _merge_records(records)
  edges, dropped = [], atlas.graph.graph.setdefault("dropped_edges", [])
  for node, rec in merged.items():
    meta = dict(rec["meta"])
    if rec["relation"] not in (None, ""):
      meta[RELATION_COL] = rec["relation"]
    documented = list(meta)
    parents = [(p, r) for p, r in rec["parents"] if p != node]
    dropped += [{"parent": node, "child": node, "relation": atlas_relation(r),
                 "reason": "self-loop"} for p, r in rec["parents"] if p == node]
    if parents:
      rels, known = _edge_relations(parents, rec["relation"])
      meta["relation"] = rels[0] if len(set(rels)) == 1 else ",".join(rels)
      documented += ["relation"] if known else []
      edges += [(p, node, r, k) for k, ((p, _), r) in enumerate(zip(parents, rels))]
    atlas.add_node(node, source={"kind": source_kind, "repo_id": node}, meta=meta,
                   documented=documented)
  for parent, *_ in edges:
    if parent not in atlas:
      atlas.add_node(parent, source={"kind": "hub", "repo_id": parent}, placeholder=True)
  for parent, child, rel, _ in edges:
    atlas.add_edge(parent, child, rel)
  dropped += break_cycles(atlas, {(p, c): k for p, c, _, k in edges})
  return atlas


def break_cycles(atlas: Atlas, position: Mapping[tuple, int] | None = None) -> list[dict]:
  """Removes the edges that close cycles (see the module docstring); returns them.
  `position[(parent, child)]`: the parent's place in the child's list (default 0)."""
  g, position, dropped = atlas.graph, position or {}, []
  for scc in sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1):
    sub = g.subgraph(scc)
    order = sorted(sub.edges(data="relation"),
                   key=lambda e: (e[1], position.get((e[0], e[1]), 0), e[0]))
    kept = nx.DiGraph()
    kept.add_nodes_from(scc)
    for parent, child, rel in order:
      if nx.has_path(kept, child, parent):
        dropped.append({"parent": parent, "child": child, "relation": rel, "reason": "cycle"})
      else:
        kept.add_edge(parent, child)
  g.remove_edges_from([(d["parent"], d["child"]) for d in dropped])
  return dropped


def _table_records(table: pd.DataFrame, where: str) -> list[dict]:
  missing = [c for c in (ID_COL, BASE_COL) if c not in table.columns]
  if missing:
    raise ValueError(f"{where}: missing columns {missing}; has {list(table.columns)}")
  records = []
  for i, row in enumerate(table.to_dict("records")):
    rel = row.pop(RELATION_COL, None)
    parents = _base_list(row.pop(BASE_COL), f"{where} row {i}")
    node = row.pop(ID_COL)
    records.append({"id": node.strip() if isinstance(node, str) else node,
                    "parents": [(p, None) for p in parents],
                    "relation": rel.strip() if isinstance(rel, str) else None,
                    "meta": {k: v for k, v in row.items() if v not in ("", None) and v == v}})
  return records


def from_csv(path: str, *, atlas: Atlas | None = None) -> Atlas:
  """An atlas from a lineage CSV (current_model, base_model, [base_model_relation], ...)."""
  table = pd.read_csv(path, keep_default_na=False, dtype=str)
  return from_records(_table_records(table, path), atlas=atlas)


def from_jsonl(path: str, *, atlas: Atlas | None = None) -> Atlas:
  """An atlas from JSON lines with the CSV's keys (base_model: a string or a list)."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f):
      if line.strip():
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{path} line {i + 1}: not JSON ({e})") from e
  return from_records(_table_records(pd.DataFrame(rows), path), atlas=atlas)


def tag_parents(tags: Iterable[str]) -> list[tuple[str, str | None]]:
  """[(parent, relation or None)] from Hub tags `base_model:<id>` and
  `base_model:<relation>:<id>`; a parent named with a relation keeps it."""
  found = {}
  for tag in tags:
    if not isinstance(tag, str) or not tag.startswith(TAG_PREFIX):
      continue
    rest = tag[len(TAG_PREFIX):]
    rel, _, parent = rest.rpartition(":") if ":" in rest else (None, "", rest)
    if parent and (found.get(parent) is None):
      found[parent] = rel or None
  return list(found.items())


CARD_META = ("license", "pipeline_tag", "library_name", "datasets")


def card_record(repo_id: str, card) -> dict:
  """The lineage record of a jatlas.io.card.CardMetadata (or anything with its fields)."""
  from_tags = tag_parents(getattr(card, "tags", None) or ())
  parents = [(p, None) for p in card.base_models] or from_tags
  tag_rel = {p: r for p, r in from_tags}
  parents = [(p, r if r is not None else tag_rel.get(p)) for p, r in parents]
  meta = {k: (list(v) if isinstance(v, tuple) else v) for k in CARD_META
          if (v := getattr(card, k, None)) not in (None, (), [])}
  return {"id": repo_id, "parents": parents, "relation": card.base_model_relation, "meta": meta}


def from_cards(cards: Mapping[str, object], *, atlas: Atlas | None = None) -> Atlas:
  """An atlas from {repo_id: CardMetadata} (jatlas.io.card.parse_card / hub.read_card)."""
  return from_records([card_record(rid, card) for rid, card in cards.items()], atlas=atlas)


def from_hub(repo_ids: Iterable[str], *, atlas: Atlas | None = None, **read_card_kwargs) -> Atlas:
  """An atlas of Hub repos from their cards (parents not in `repo_ids` are placeholders)."""
  from jatlas.io import hub  # the Hub client is imported only when the Hub is used
  return from_cards({rid: hub.read_card(rid, **read_card_kwargs) for rid in repo_ids},
                    atlas=atlas)
