"""Edge accuracy of a recovered atlas against the true one, per relation.

Every true edge parent -> child is scored, grouped by its true relation:
- finetune / adapter / quantized edges: placement is right when the recovered
  atlas links the two models in either direction (p -> c or c -> p); direction is
  right when it has p -> c itself; typed when that recovered p -> c also has the
  true relation.
- merge edges are scored per merge child c with true parent set P (so all of c's
  merge edges are right or wrong together): placement is right when every parent
  in P is linked to c (either direction) and every recovered parent of c is in P;
  direction when c's recovered parents are exactly P; typed when, in addition,
  all of c's recovered in-edges are merges.
The recovered relation does not matter for placement or direction. Rows: each
relation with true edges (RELATIONS order), then "all" over every true edge.
Columns: true_edges, recovered_edges (recovered edges labelled with the relation;
"all": every recovered edge), placement, direction, typed (fractions of true
edges; NaN without true edges). Nodes missing from `recovered` leave their edges
wrong.

Usage:
  table = compare(Atlas.load("true.json"), Atlas.load("recovered.json"))
  table.loc["all", "direction"]          # overall directed edge accuracy
"""
import numpy as np
import pandas as pd

from jatlas.atlas.graph import RELATIONS, Atlas

COLUMNS = ("true_edges", "recovered_edges", "placement", "direction", "typed")


def _merge_scores(g_true, g_rec, child: str) -> tuple[bool, bool, bool]:
  parents = {p for p, _, r in g_true.in_edges(child, data="relation") if r == "merge"}
  if child not in g_rec:
    return False, False, False
  rec_parents = set(g_rec.predecessors(child))
  linked = rec_parents | set(g_rec.successors(child))
  placed = parents <= linked and rec_parents <= parents
  directed = rec_parents == parents
  typed = directed and all(r == "merge" for *_, r in g_rec.in_edges(child, data="relation"))
  return placed, directed, typed


def edge_scores(true: Atlas, recovered: Atlas) -> pd.DataFrame:
  """One row per true edge: parent, child, relation, placement, direction, typed."""
  g_true, g_rec = true.graph, recovered.graph
  merge_cache, rows = {}, []
  for p, c, rel in g_true.edges(data="relation"):
    if rel == "merge":
      if c not in merge_cache:
        merge_cache[c] = _merge_scores(g_true, g_rec, c)
      placed, directed, typed = merge_cache[c]
    else:
      directed = g_rec.has_edge(p, c)
      placed = directed or g_rec.has_edge(c, p)
      typed = directed and g_rec.edges[p, c]["relation"] == rel
    rows.append((p, c, rel, placed, directed, typed))
  return pd.DataFrame(rows, columns=["parent", "child", "relation", "placement", "direction",
                                     "typed"])


def compare(true: Atlas, recovered: Atlas) -> pd.DataFrame:
  """The accuracy table (module docstring), indexed by relation."""
  scores = edge_scores(true, recovered)
  rec_counts = recovered.relation_counts()
  present = [r for r in (*RELATIONS, *sorted(set(scores.relation) - set(RELATIONS)))
             if (scores.relation == r).any()]
  out = {}
  for rel in [*present, "all"]:
    s = scores if rel == "all" else scores[scores.relation == rel]
    n = len(s)
    out[rel] = {"true_edges": n,
                "recovered_edges": recovered.graph.number_of_edges() if rel == "all"
                else rec_counts.get(rel, 0),
                "placement": s.placement.mean() if n else np.nan,
                "direction": s.direction.mean() if n else np.nan,
                "typed": s.typed.mean() if n else np.nan}
  table = pd.DataFrame.from_dict(out, orient="index", columns=list(COLUMNS))
  table.index.name = "relation"
  return table
