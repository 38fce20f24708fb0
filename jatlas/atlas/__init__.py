"""The Model Atlas: a graph of models and the weight transformations between them.

Nodes are models (where their weights are, traits, metadata, which fields are
documented); edges are finetune / adapter / quantized / merge transformations,
documented or recovered, with a confidence. Built from documented metadata (Hub
cards, CSV/JSONL dumps, zoo lineage columns, merge recipes), queried, saved as
JSON or GraphML, and compared against a recovered atlas.

Usage:
  from jatlas import atlas
  a = atlas.from_csv("hf_lineage_sample.csv")     # or from_zoo(["runs/base", "runs/ft"])
  a.validate(); a.nodes_table(); a.save("atlas.json"); atlas.Atlas.load("atlas.graphml")
  atlas.ancestors(a, "org/model"); atlas.best_in_tree(a, "org/model", "test_acc")
  atlas.compare(true_atlas, recovered_atlas)       # edge accuracy per relation
"""
from jatlas.atlas.compare import compare
from jatlas.atlas.from_metadata import from_cards, from_csv, from_hub, from_jsonl, from_records
from jatlas.atlas.from_local import from_files, from_zoo, lineage_columns
from jatlas.atlas.graph import RELATIONS, Atlas, UnknownNodeError
from jatlas.atlas.queries import (ancestors, best_in_tree, descendants, path, root, roots,
                                  siblings, tree)

__all__ = [
    "RELATIONS", "Atlas", "UnknownNodeError", "from_records", "from_csv", "from_jsonl",
    "from_cards", "from_hub", "from_zoo", "from_files", "lineage_columns", "ancestors",
    "descendants", "roots", "root", "tree", "siblings", "best_in_tree", "path", "compare",
]
