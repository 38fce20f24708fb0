"""The recovered atlas of zoo checkpoints, from their weights alone (what `jatlas atlas
recover` writes): the zoos' lineage columns are read for node ids and metadata only,
never for edges.

Usage:
  atlas = recover_atlas(["runs/base", "runs/ft"])                 # final checkpoints
  atlas = recover_atlas(dirs, rows=["base/m00003@e0005", ...], method="mother")
"""
from typing import Sequence

from jatlas.atlas.from_local import from_zoo
from jatlas.atlas.graph import Atlas
from jatlas.atlas.recover import mother_baseline, node_weights, recover_lineage, to_atlas

METHODS = {"jatlas": recover_lineage, "mother": mother_baseline}


def recover_atlas(zoo_dirs: Sequence[str], rows: Sequence[str] = ("final",),
                  method: str = "jatlas") -> Atlas:
  """rows: "final" (every healthy member's final checkpoint), "all" (every healthy
  checkpoint) or node ids; method: "jatlas" or "mother"."""
  if method not in METHODS:
    raise ValueError(f"recover_atlas: method={method!r}, expected one of {sorted(METHODS)}")
  rows = list(rows)
  atlas = from_zoo(zoo_dirs, final_only=rows == ["final"])
  atlas.graph.remove_edges_from(list(atlas.graph.edges))  # weights only: lineage unused
  atlas.graph.remove_nodes_from(atlas.placeholders())
  if rows in (["final"], ["all"]):
    ids = [n for n, d in atlas.graph.nodes(data=True) if d["meta"].get("status") == "ok"]
  else:
    ids = [atlas.require(r) for r in rows]
  if len(ids) < 2:
    raise ValueError(f"atlas recover: {len(ids)} model(s) selected; lineage needs >= 2")
  atlas = atlas.subatlas(ids)
  edges = METHODS[method](node_weights(atlas, ids), ids)
  return to_atlas(edges, ids, atlas, provenance="recovered", method=method)
