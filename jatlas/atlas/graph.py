"""The Model Atlas graph: models as typed nodes, weight transformations as typed edges.

A node is a model: `source` says where its weights are ({"kind": "zoo", "dir", "row"},
{"kind": "file", "path"} or {"kind": "hub", "repo_id"}), `traits` its measured
properties (test_acc, ...), `meta` its metadata (license, task, created, ...), and
`documented` the trait/meta fields that were documented (every other field was
inferred, e.g. imputed). A placeholder is a model that is referenced (as a parent)
but not described. An edge parent -> child has a `relation` (RELATIONS), a
`provenance` ("documented" or "recovered") and a `confidence` in [0, 1]. Node ids
are strings: Hub repo ids, `<zoo directory name>/<row id>` for zoo checkpoints.

Files: JSON `{"nodes": [{"id", "source", "traits", "meta", "documented",
"placeholder"}, ...], "edges": [{"parent", "child", "relation", "provenance",
"confidence"}, ...], "graph": {...}}` (graph: attributes of the whole atlas, such as
the edges an import dropped to break cycles), or GraphML, whose attributes must be
scalars: source/traits/meta/documented/graph are stored as JSON strings. Both keep
node and edge order, so a round trip is exact.

Usage:
  atlas = Atlas()
  atlas.add_node("base/m00000@e0002", source={"kind": "zoo", "dir": "/runs/base", "row": 2},
                 traits={"test_acc": 0.93}, meta={"task": "pair:0-1"})
  atlas.add_node("org/merged", placeholder=True)
  atlas.add_edge("base/m00000@e0002", "org/merged", "merge", provenance="recovered",
                 confidence=0.8)
  atlas.validate()                 # ["merge child 'org/merged' has 1 merge parent(s) ..."]
  atlas.nodes_table(); atlas.edges_table()          # pandas DataFrames
  atlas.save("atlas.json"); Atlas.load("atlas.graphml")
  atlas.graph                      # the networkx DiGraph underneath
"""
import difflib
import json
import math
import os
from collections import Counter
from typing import Iterable, Mapping

import networkx as nx
import numpy as np
import pandas as pd

from jatlas import files

RELATIONS = ("finetune", "adapter", "quantized", "merge")
PROVENANCES = ("documented", "recovered")
SOURCE_KINDS = ("zoo", "file", "hub")
SUFFIXES = (".json", ".graphml")
NODE_KEYS = ("source", "traits", "meta", "documented", "placeholder")
EDGE_KEYS = ("relation", "provenance", "confidence")


class UnknownNodeError(KeyError):
  """A node id the atlas does not hold; the message suggests close ids."""

  def __str__(self):
    return str(self.args[0])


def close_names(name: str, known: Iterable[str], n: int = 3) -> str:
  """'; did you mean 'a', 'b'?' for the known names closest to `name` ('' if none)."""
  close = difflib.get_close_matches(str(name), list(known), n=n)
  return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def check_choice(what: str, value, choices: tuple) -> None:
  if value not in choices:
    raise ValueError(f"{what} {value!r}: expected one of {choices}"
                     f"{close_names(value, choices, n=1)}")


def plain(value, where: str):
  """A JSON-able copy of `value`: numpy scalars as Python numbers, tuples as lists."""
  if isinstance(value, Mapping):
    return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
  if isinstance(value, np.generic):
    return value.item()
  if value is None or isinstance(value, (str, bool, int, float)):
    return value
  raise TypeError(f"{where}: {type(value).__name__} {value!r} is not JSON-able "
                  f"(expected str, number, bool, None, list or dict)")


class Atlas:
  """A Model Atlas on a networkx DiGraph (`self.graph`); see the module docstring."""

  def __init__(self, graph: nx.DiGraph | None = None):
    self.graph = nx.DiGraph() if graph is None else graph

  def __len__(self):
    return self.graph.number_of_nodes()

  def __contains__(self, node_id):
    return node_id in self.graph

  def __repr__(self):
    return f"Atlas({self.summary()})"

  def add_node(self, node_id: str, *, source: dict | None = None, traits: dict | None = None,
               meta: dict | None = None, documented: Iterable[str] | None = None,
               placeholder: bool = False) -> None:
    """Adds a model, or updates it (given fields win; a placeholder becomes a model when
    added again with placeholder=False). `documented`: the documented trait/meta field
    names (default: every field given here)."""
    if not isinstance(node_id, str) or not node_id:
      raise TypeError(f"node_id must be a non-empty str, got {node_id!r}")
    if source is not None:
      if not isinstance(source, Mapping) or "kind" not in source:
        raise ValueError(f"node {node_id!r}: source must be a dict with 'kind', got {source!r}")
      check_choice(f"node {node_id!r}: source kind", source["kind"], SOURCE_KINDS)
    traits = plain(dict(traits or {}), f"node {node_id!r} traits")
    meta = plain(dict(meta or {}), f"node {node_id!r} meta")
    given = [*traits, *meta] if documented is None else [str(f) for f in documented]
    old = self.graph.nodes[node_id] if node_id in self.graph else None
    if old is None:
      self.graph.add_node(node_id, source=plain(source, f"node {node_id!r} source"),
                          traits=traits, meta=meta, documented=sorted(set(given)),
                          placeholder=bool(placeholder))
      return
    if source is not None:
      old["source"] = plain(source, f"node {node_id!r} source")
    old["traits"].update(traits)
    old["meta"].update(meta)
    inferred = set(traits) | set(meta)
    old["documented"] = sorted((set(old["documented"]) - inferred) | set(given))
    old["placeholder"] = old["placeholder"] and bool(placeholder)

  def add_edge(self, parent: str, child: str, relation: str, *,
               provenance: str = "documented", confidence: float = 1.0) -> None:
    """Adds (or replaces) the edge parent -> child; both nodes must exist."""
    what = f"edge {parent!r} -> {child!r}"
    check_choice(f"{what}: relation", relation, RELATIONS)
    check_choice(f"{what}: provenance", provenance, PROVENANCES)
    missing = [n for n in (parent, child) if n not in self.graph]
    if missing:
      raise UnknownNodeError(f"{what}: unknown node(s) {missing}" +
                             close_names(missing[0], self.graph.nodes))
    if not 0.0 <= float(confidence) <= 1.0:
      raise ValueError(f"{what}: confidence {confidence} outside [0, 1]")
    self.graph.add_edge(parent, child, relation=relation, provenance=provenance,
                        confidence=float(confidence))

  def require(self, node_id: str) -> str:
    """`node_id` if the atlas holds it, else UnknownNodeError naming close ids."""
    if node_id not in self.graph:
      raise UnknownNodeError(f"unknown model {node_id!r} (atlas of {len(self)} models)"
                             + close_names(node_id, self.graph.nodes))
    return node_id

  def node(self, node_id: str) -> dict:
    """The node's attributes (a copy) with its id."""
    return {"id": self.require(node_id), **json.loads(json.dumps(self.graph.nodes[node_id]))}

  def parents(self, node_id: str) -> list[str]:
    return sorted(self.graph.predecessors(self.require(node_id)))

  def children(self, node_id: str) -> list[str]:
    return sorted(self.graph.successors(self.require(node_id)))

  def placeholders(self) -> list[str]:
    return [n for n, p in self.graph.nodes(data="placeholder") if p]

  def relation_counts(self) -> dict[str, int]:
    """{relation: number of edges}, in RELATIONS order, relations with edges only."""
    counts = Counter(r for *_, r in self.graph.edges(data="relation"))
    return {r: counts[r] for r in (*RELATIONS, *sorted(set(counts) - set(RELATIONS)))
            if counts[r]}

  def summary(self) -> str:
    """One line: nodes, placeholders, edges per relation, edges dropped to break cycles."""
    rels = ", ".join(f"{r} {n}" for r, n in self.relation_counts().items()) or "none"
    dropped = len(self.graph.graph.get("dropped_edges", ()))
    return (f"{len(self)} nodes ({len(self.placeholders())} placeholders), "
            f"{self.graph.number_of_edges()} edges ({rels}), "
            f"{dropped} cycle edges dropped")

  def subatlas(self, node_ids: Iterable[str]) -> "Atlas":
    """The atlas restricted to `node_ids` (a copy; edges between them kept)."""
    ids = [self.require(n) for n in node_ids]
    return Atlas(self.graph.subgraph(ids).copy())

  def validate(self) -> list[str]:
    """Every structural problem: cycles, unknown relations or provenances, merge
    children with < 2 merge parents, non-merge children with > 1 parent."""
    g, problems = self.graph, []
    for scc in sorted((sorted(c) for c in nx.strongly_connected_components(g)
                       if len(c) > 1 or g.has_edge(*[next(iter(c))] * 2))):
      cycle = nx.find_cycle(g.subgraph(scc), source=scc[0])
      problems.append("cycle: " + " -> ".join([*(u for u, _ in cycle), cycle[-1][1]]))
    for u, v, d in g.edges(data=True):
      rel = d.get("relation")
      if rel not in RELATIONS:
        problems.append(f"edge {u!r} -> {v!r}: unknown relation {rel!r}; expected one of "
                        f"{RELATIONS}{close_names(rel, RELATIONS, 1)}")
      if d.get("provenance") not in PROVENANCES:
        problems.append(f"edge {u!r} -> {v!r}: unknown provenance {d.get('provenance')!r}; "
                        f"expected one of {PROVENANCES}")
    for child in g.nodes:
      rels = [d.get("relation") for _, _, d in g.in_edges(child, data=True)]
      n_merge = rels.count("merge")
      if n_merge and n_merge < 2:
        problems.append(f"merge child {child!r} has {n_merge} merge parent(s); a merge has >= 2")
      if len(rels) > 1 and n_merge < len(rels):
        problems.append(f"child {child!r} has {len(rels)} parents {sorted(g.predecessors(child))}"
                        f" but not only merge edges ({sorted(rels)}); only a merge has > 1 parent")
    return problems

  def nodes_table(self) -> pd.DataFrame:
    """One row per node: id, placeholder, source_kind, parents, children, then one column
    per trait, then one per meta field (`meta.<field>` where a trait has its name)."""
    rows, trait_names = [], set()
    for n, d in self.graph.nodes(data=True):
      trait_names |= set(d["traits"])
    for n, d in self.graph.nodes(data=True):
      rows.append({"id": n, "placeholder": d["placeholder"],
                   "source_kind": (d["source"] or {}).get("kind"),
                   "parents": self.graph.in_degree(n), "children": self.graph.out_degree(n),
                   **d["traits"],
                   **{(f"meta.{k}" if k in trait_names else k): v for k, v in d["meta"].items()}})
    return pd.DataFrame(rows, columns=None if rows else
                        ["id", "placeholder", "source_kind", "parents", "children"])

  def edges_table(self) -> pd.DataFrame:
    """One row per edge: parent, child, relation, provenance, confidence."""
    return pd.DataFrame([{"parent": u, "child": v, **{k: d[k] for k in EDGE_KEYS}}
                         for u, v, d in self.graph.edges(data=True)],
                        columns=["parent", "child", *EDGE_KEYS])

  def to_json(self) -> dict:
    return {"nodes": [{"id": n, **{k: d[k] for k in NODE_KEYS}}
                      for n, d in self.graph.nodes(data=True)],
            "edges": [{"parent": u, "child": v, **{k: d[k] for k in EDGE_KEYS}}
                      for u, v, d in self.graph.edges(data=True)],
            "graph": plain(self.graph.graph, "atlas graph attributes")}

  @classmethod
  def from_json(cls, obj: dict, where: str = "atlas") -> "Atlas":
    missing = [k for k in ("nodes", "edges") if k not in obj]
    if missing:
      raise ValueError(f"{where}: missing keys {missing}; expected {{'nodes', 'edges'}}")
    atlas = cls()
    atlas.graph.graph.update(obj.get("graph") or {})
    for n in obj["nodes"]:
      atlas.add_node(n["id"], source=n.get("source"), traits=n.get("traits"),
                     meta=n.get("meta"), documented=n.get("documented"),
                     placeholder=bool(n.get("placeholder", False)))
    for e in obj["edges"]:
      atlas.add_edge(e["parent"], e["child"], e["relation"],
                     provenance=e.get("provenance", "documented"),
                     confidence=e.get("confidence", 1.0))
    return atlas

  def save(self, path: str) -> None:
    """Writes JSON or GraphML (by suffix), atomically."""
    suffix = _suffix(path)
    if suffix == ".json":
      files.write_json(path, self.to_json())
      return
    g = nx.DiGraph()
    g.graph["atlas"] = json.dumps(self.to_json()["graph"], sort_keys=True)
    for n, d in self.graph.nodes(data=True):
      g.add_node(n, **{k: json.dumps(d[k], sort_keys=True) for k in NODE_KEYS[:-1]},
                 placeholder=bool(d["placeholder"]))
    for u, v, d in self.graph.edges(data=True):
      g.add_edge(u, v, **{k: d[k] for k in EDGE_KEYS})
    with files.atomic_path(path) as tmp:
      nx.write_graphml(g, tmp)

  @classmethod
  def load(cls, path: str) -> "Atlas":
    suffix = _suffix(path)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"atlas file {path} not found")
    if suffix == ".json":
      with open(path, encoding="utf-8") as f:
        return cls.from_json(json.load(f), where=path)
    g = nx.read_graphml(path)
    return cls.from_json({
        "graph": json.loads(g.graph.get("atlas", "{}")),
        "nodes": [{"id": n, **{k: json.loads(d[k]) for k in NODE_KEYS[:-1]},
                   "placeholder": _graphml_bool(d["placeholder"])}
                  for n, d in g.nodes(data=True)],
        "edges": [{"parent": u, "child": v, **d} for u, v, d in g.edges(data=True)]},
        where=path)


def _graphml_bool(value) -> bool:
  return value if isinstance(value, bool) else str(value).lower() == "true"


def _suffix(path: str) -> str:
  suffix = os.path.splitext(str(path))[1].lower()
  if suffix not in SUFFIXES:
    raise ValueError(f"atlas file {path}: suffix {suffix!r}, expected one of {SUFFIXES}")
  return suffix


def is_finite(value) -> bool:
  """A trait value a query can rank: a real, non-NaN number."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
