"""The atlas recovery experiment on its smoke config: zoos (roots, fan, a snake of depth
3), low-rank, int8 and merged models, the true atlas, both methods' atlases and table."""
import json
import os

import numpy as np
import pandas as pd

from jatlas.atlas import Atlas, compare
from jatlas.io import load_file
from jatlas.merge import read_recipe


def test_smoke_run_writes_atlases_and_table(tmp_path, run_smoke):
  out = str(tmp_path / "run")
  proc = run_smoke("atlas_recovery", out, devices=1)
  r = json.load(open(os.path.join(out, "results.json")))
  true = Atlas.load(os.path.join(out, "true.json"))
  # 4 roots, 16 fan children, 3 x 2 snake models, 4 low-rank, 4 int8, 3 merges
  assert r["nodes"] == len(true) == 4 + 16 + 6 + 4 + 4 + 3
  assert r["true_edges"] == {"finetune": 22, "adapter": 4, "quantized": 4, "merge": 7}
  assert true.validate() == [] and true.placeholders() == []
  # the snake: snake3 -> snake2 -> snake1 -> fan -> root
  node = next(n for n in true.graph.nodes if n.startswith("snake3/"))
  chain = [node]
  while true.parents(chain[-1]):
    chain.append(true.parents(chain[-1])[0])
  assert [c.split("/")[0] for c in chain] == ["snake3", "snake2", "snake1", "fan", "roots"]
  # an int8 leaf is its parent quantized per output channel: <= 255 levels per column
  q = next(n for n in true.graph.nodes if n.startswith("int8/"))
  w = load_file(true.node(q)["source"]["path"])["params/fc1/kernel"]
  assert max(len(np.unique(w[:, j])) for j in range(w.shape[1])) <= 255
  # a low-rank child differs from its parent by rank <= 2 in every kernel
  lr = next(n for n in true.graph.nodes if n.startswith("lowrank/"))
  parent = true.parents(lr)[0]
  from jatlas.atlas.recover import node_weights
  t = node_weights(true, [lr, parent])
  for k in ("params/fc1/kernel", "params/fc2/kernel", "params/head/kernel"):
    assert np.linalg.matrix_rank(t[k][0] - t[k][1], tol=1e-5) <= 2, k
  # a merge file carries its recipe; its parents are siblings in the true atlas
  m = next(n for n in true.graph.nodes if n.startswith("merge/"))
  recipe = read_recipe(true.node(m)["source"]["path"])
  assert sorted(recipe["parents"]) == true.parents(m)
  assert len({true.parents(p)[0] for p in recipe["parents"]}) == 1
  table = pd.read_csv(os.path.join(out, "results.csv"))
  assert set(table.method) == {"mother", "jatlas", "jatlas+times", "l2-distance"}
  assert set(r["nearest_parent"]) == {"peak", "l2"}
  assert all(0 <= v <= 1 for v in r["nearest_parent"].values())
  rels = ["finetune", "adapter", "quantized", "merge", "all"]
  assert table[table.method == "jatlas"].relation.tolist() == rels
  for name, path in (("jatlas", "recovered.json"), ("mother", "mother.json"),
                     ("l2_distance", "recovered_l2.json")):
    rec = Atlas.load(os.path.join(out, path))
    assert sorted(rec.graph.nodes) == sorted(true.graph.nodes)
    assert set(rec.edges_table().provenance) == {"recovered"}
    got = compare(true, rec)
    assert r[name]["all"]["direction"] == round(float(got.loc["all", "direction"]), 4)
    assert r[f"{name}_edge_acc"] == r[name]["all"]["direction"]
  # MoTHer knows no quantized or merge edges; jatlas keeps int8 models as leaves
  assert set(Atlas.load(os.path.join(out, "mother.json")).edges_table().relation) == {"finetune"}
  assert r["jatlas"]["quantized"]["direction"] == 1.0
  assert r["jatlas_edge_acc"] > r["mother_edge_acc"]
  assert "edge accuracy jatlas" in proc.stdout
