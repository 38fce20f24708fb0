"""Model Atlas recovery on a synthetic atlas of digit MLPs grown with jatlas's zoo engine:
roots, fans, snakes, low-rank fine-tunes, int8 leaves and merges; recovered from the
weights alone by MoTHer (`mother_baseline`) and by jatlas (`recover_lineage`), scored
per relation by `jatlas.atlas.compare` (placement, direction = MoTHer's edge accuracy).

  python experiments/atlas_recovery.py --config configs/atlas_recovery.py[:smoke] --out DIR

Writes DIR/zoos/<name> (the zoos; a rerun reuses finished ones), DIR/models/ (low-rank,
int8 and merged models as safetensors; merges carry their recipe), DIR/true.json (the
true atlas), DIR/recovered.json (jatlas), DIR/mother.json, DIR/recovered_times.json
(jatlas with creation order, if configured), DIR/results.json, DIR/results.csv (one row
per method and relation), DIR/atlas.png (the recovered atlas, if drawing is available)
and DIR/jax_cache.
"""
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from jatlas import data, experiment, merge
from jatlas.atlas import Atlas, compare, from_files, from_zoo
from jatlas.atlas.distances import layer_distance, matrix_names, peak_distance
from jatlas.atlas.recover import mother_baseline, node_weights, recover_lineage, to_atlas
from jatlas.files import write_json
from jatlas.flat_names import unflatten_variables
from jatlas.io import save_safetensors
from jatlas.zoo import Engine, Population, labels_data
from jatlas.zoo.reuse import open_or_train

STAGES = {"roots": 0, "fan": 1, "snake1": 2, "snake2": 3, "snake3": 4, "fan2": 3}


def train_zoos(cfg, out: str) -> dict:
  """{name: Zoo}, each fine-tune zoo started from its parent zoo's final checkpoints."""
  zoos = {}
  for name, parent in cfg.parents:
    c = cfg.zoos[name]
    if parent:
      c.zoo.parent = os.path.abspath(os.path.join(out, "zoos", parent))
    zoos[name] = open_or_train(c, os.path.abspath(os.path.join(out, "zoos", name)))
  return zoos


def zoo_atlas(zoos: dict) -> Atlas:
  """The documented atlas of the zoos' healthy final checkpoints (lineage columns)."""
  atlas = from_zoo([z.dir for z in zoos.values()], final_only=True)
  sick = [n for n, d in atlas.graph.nodes(data=True) if d["meta"].get("status") != "ok"]
  atlas.graph.remove_nodes_from(sick)
  return atlas


def lowrank_population(net, rank: int, kernels: dict) -> tuple:
  """(Population, weights(params, member) -> merged params): members train rank-`rank`
  factors a [in, r], b [r, out] of every kernel; the parents' weights (frozen, shared,
  member.extra["parent"] picks one) stay fixed: W = W_parent + a @ b."""
  def init(key, member):
    keys = jax.random.split(key, len(kernels))
    a = {m: jax.random.normal(k, (s[0], rank)) / math.sqrt(s[0])
         for (m, s), k in zip(kernels.items(), keys)}
    return {"a": a, "b": {m: jnp.zeros((rank, s[1])) for m, s in kernels.items()}}, {}

  def weights(params, member):
    parent = jax.tree.map(lambda w: w[member.extra["parent"]], params["parents"])
    return {m: ({**v, "kernel": v["kernel"] + params["a"][m] @ params["b"][m]}
                if m in kernels else v) for m, v in parent.items()}

  def loss(params, state, batch, member):
    logits = net.apply({"params": weights(params, member)}, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), state

  return Population(init=init, loss=loss), weights


def train_lowrank(cfg, net, parent_P: dict, subsets: tuple) -> list[dict]:
  """Per low-rank child its merged params (nested); child i has parent i of parent_P."""
  lr_cfg = cfg.lowrank
  ds = data.load("digits")
  tasks = data.class_subsets(ds, subsets, relabel=False)
  kernels = {m: v["kernel"].shape[1:] for m, v in parent_P.items() if "kernel" in v}
  pop, weights = lowrank_population(net, lr_cfg.rank, kernels)
  n = len(jax.tree.leaves(parent_P)[0])
  in_task = tasks.labels["train"] >= 0
  spe = -(-int(in_task.sum(1).max()) // lr_cfg.batch_size)
  eng = Engine(pop, batch_size=lr_cfg.batch_size, steps_per_epoch=spe,
               frozen={"parents": parent_P})
  members = eng.members(seed=lr_cfg.seed * 1_000_000 + np.arange(n),
                        task=np.arange(n) % len(subsets), lr=lr_cfg.lr,
                        total_steps=lr_cfg.epochs * spe,
                        extra={"parent": np.arange(n, dtype=np.int32)})
  states, _ = eng.run(eng.init(members), members,
                      eng.put(labels_data(ds.x_train, tasks.labels["train"])), 0,
                      lr_cfg.epochs * spe)
  params = jax.device_get(states.params)
  out = []
  for i in range(n):
    member = jax.tree.map(lambda a: a[i], members)
    p_i = jax.tree.map(lambda a: a[i], params)
    out.append(jax.device_get(weights({**p_i, "parents": parent_P}, member)))
  return out


def int8(w):
  """Per-channel (last axis) symmetric int8 quantize-dequantize of a kernel."""
  scale = np.abs(w).max(axis=tuple(range(w.ndim - 1)), keepdims=True) / 127
  scale = np.where(scale > 0, scale, 1.0)
  return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def params_of(tensors: dict, i: int) -> dict:
  """Model i of stacked {flat name: [M, ...]} as nested {"params": ...}."""
  return unflatten_variables({k: np.asarray(v[i]) for k, v in tensors.items()})


def add_files(atlas: Atlas, out: str, kind: str, models: list, parents: list, relation: str,
              stage: dict, stage_of: list) -> None:
  """Writes models as DIR/models/<kind>/<id>.safetensors; nodes `<kind>/<id>` with one
  `relation` edge from their parent."""
  os.makedirs(os.path.join(out, "models", kind), exist_ok=True)
  for i, (m, p) in enumerate(zip(models, parents)):
    node = f"{kind}/{kind[0]}{i:04d}"
    path = os.path.join(out, "models", kind, f"{kind[0]}{i:04d}.safetensors")
    save_safetensors(path, m, {"parent": p})
    atlas.add_node(node, source={"kind": "file", "path": os.path.abspath(path)},
                   meta={"kind": kind})
    atlas.add_edge(p, node, relation)
    stage[node] = stage_of[i]


def add_merges(cfg, atlas: Atlas, out: str, ids: list, tensors: dict, stage: dict) -> None:
  """Averages of 2 and 3 siblings and TIES of 2 (base: their parent), via jatlas.merge."""
  m = cfg.merges
  rng = np.random.default_rng(m.seed)
  pos = {n: i for i, n in enumerate(ids)}
  fans = {}
  for p, c in atlas.graph.edges:
    if c.startswith("fan/") and p in pos:
      fans.setdefault(p, []).append(c)
  parents = sorted(p for p, kids in fans.items() if len(kids) >= 3)
  os.makedirs(os.path.join(out, "models", "merge"), exist_ok=True)
  paths, names = [], []
  plan = [("average", 2)] * m.average2 + [("average", 3)] * m.average3 + [("ties", 2)] * m.ties
  for i, (method, k) in enumerate(plan):
    base = parents[i % len(parents)]
    sib = list(rng.choice(sorted(fans[base]), k, replace=False))
    models = [params_of(tensors, pos[s]) for s in sib]
    if method == "average":
      merged, params, base_id = merge.average(models), {}, None
    else:
      merged = merge.ties(params_of(tensors, pos[base]), models, density=m.ties_density)
      params, base_id = {"density": m.ties_density}, base
    names.append(f"merge/{method}{k}_{i:03d}")
    paths.append(os.path.join(out, "models", "merge", f"{method}{k}_{i:03d}.safetensors"))
    merge.save_merged(paths[-1], jax.device_get(merged), method=method, parents=sib,
                      params=params, base=base_id)
    stage[names[-1]] = max(stage[s] for s in sib) + 1
  from_files(paths, ids=names, atlas=atlas)


def grow_atlas(cfg, out: str, zoos: dict) -> tuple[Atlas, dict]:
  """(true atlas, {node: creation stage}): the zoos, then low-rank, merge, int8 models."""
  atlas = zoo_atlas(zoos)
  ids = list(atlas.graph.nodes)
  stage = {n: STAGES[n.split("/")[0]] for n in ids}
  tensors = node_weights(atlas, ids)
  net = zoos["roots"].model()
  rng = np.random.default_rng(cfg.lowrank.seed)
  lr_parents = list(rng.choice(ids, cfg.lowrank.count, replace=False))
  parent_P = jax.tree.map(lambda *a: np.stack(a),
                          *[params_of(tensors, ids.index(p))["params"] for p in lr_parents])
  lowrank = train_lowrank(cfg, net, parent_P, cfg.zoos.fan.tasks.kwargs.subsets)
  add_files(atlas, out, "lowrank", [{"params": p} for p in lowrank], lr_parents, "adapter",
            stage, [stage[p] + 1 for p in lr_parents])
  add_merges(cfg, atlas, out, ids, tensors, stage)
  pool = [n for n in atlas.graph.nodes if not n.startswith("merge/")]
  rng = np.random.default_rng(cfg.quantized.seed)
  q_parents = list(rng.choice(pool, cfg.quantized.count, replace=False))
  weights = node_weights(atlas, q_parents)
  quant = [unflatten_variables({k: int8(v[i]) if v.ndim >= 3 else v[i]
                                for k, v in weights.items()}) for i in range(len(q_parents))]
  add_files(atlas, out, "int8", quant, q_parents, "quantized", stage,
            [stage[p] + 1 for p in q_parents])
  return atlas, stage


def nodes_only(atlas: Atlas) -> Atlas:
  return Atlas.from_json({"nodes": atlas.to_json()["nodes"], "edges": []})


def run_methods(cfg, atlas: Atlas, stage: dict, ids: list, tensors: dict) -> dict:
  """{method: (recovered atlas, seconds)} from the weights of `ids` (shuffled order)."""
  runs = {"mother": lambda: mother_baseline(tensors, ids),
          "jatlas": lambda: recover_lineage(tensors, ids),
          "l2-distance": lambda: recover_lineage(tensors, ids, distance="l2")}  # ablation
  if cfg.recover.with_times:
    times = np.array([stage[n] for n in ids], float)
    runs["jatlas+times"] = lambda: recover_lineage(tensors, ids, times=times)
  out = {}
  for name, fn in runs.items():
    t0 = time.perf_counter()
    edges = fn()
    seconds = time.perf_counter() - t0
    out[name] = (to_atlas(edges, ids, nodes_only(atlas), method=name), seconds)
  return out


def nearest_parent(true: Atlas, stage: dict, ids: list, tensors: dict) -> dict:
  """{distance: fraction of fine-tune edges whose parent is the child's nearest model
  among those of an earlier creation stage}: how well each distance alone places."""
  names = matrix_names(tensors)
  stage_M = np.array([stage[n] for n in ids])
  pos = {n: i for i, n in enumerate(ids)}
  edges = [(pos[p], pos[c]) for p, c, d in true.graph.edges(data=True)
           if d["relation"] == "finetune"]
  out = {}
  for name, fn in (("peak", peak_distance), ("l2", layer_distance)):
    d = fn(tensors, names=names)
    d[stage_M[None, :] >= stage_M[:, None]] = np.inf  # [child, candidate]: earlier only
    out[name] = round(float(np.mean([np.argmin(d[c]) == p for p, c in edges])), 4)
  return out


def score(true: Atlas, runs: dict) -> tuple[pd.DataFrame, dict]:
  """(table: method x relation, results.json entries)."""
  rows, results = [], {}
  for name, (rec, seconds) in runs.items():
    t = compare(true, rec)
    key = name.replace("+", "_").replace("-", "_")
    results[key] = {rel: {c: (None if pd.isna(v) else round(float(v), 4))
                          for c, v in r.items()} for rel, r in t.iterrows()}
    results[f"{key}_edge_acc"] = round(float(t.loc["all", "direction"]), 4)
    results[f"{key}_placement_acc"] = round(float(t.loc["all", "placement"]), 4)
    results[f"{key}_seconds"] = round(seconds, 3)
    rows += [{"method": name, "relation": rel, **r, "seconds": round(seconds, 3)}
             for rel, r in t.iterrows()]
  return pd.DataFrame(rows), results


def draw(atlas: Atlas, path: str) -> str | None:
  """The static figure, if jatlas.atlas.draw provides one; else the reason it failed."""
  try:
    from jatlas.atlas.draw import draw_static
    draw_static(atlas, path)
    return None
  except Exception as e:  # noqa: BLE001 - the figure is optional, the table is not
    return f"{type(e).__name__}: {e}"


def main(argv):
  out, cfg = experiment.start(argv, __doc__)
  t0 = time.time()
  zoos = train_zoos(cfg, out)
  zoo_s = time.time() - t0
  true, stage = grow_atlas(cfg, out, zoos)
  grow_s = time.time() - t0 - zoo_s
  true.save(os.path.join(out, "true.json"))
  ids = list(np.random.default_rng(cfg.recover.order_seed).permutation(list(true.graph.nodes)))
  tensors = node_weights(true, ids)
  runs = run_methods(cfg, true, stage, ids, tensors)
  files = {"mother": "mother.json", "jatlas": "recovered.json",
           "jatlas+times": "recovered_times.json", "l2-distance": "recovered_l2.json"}
  for name, (rec, _) in runs.items():
    rec.save(os.path.join(out, files[name]))
  table, results = score(true, runs)
  figure_error = draw(runs["jatlas"][0], os.path.join(out, "atlas.png"))
  results.update({
      "nodes": len(true), "true_edges": true.relation_counts(),
      "nearest_parent": nearest_parent(true, stage, ids, tensors),
      "zoo_members": {n: int(z.table.final.sum()) for n, z in zoos.items()},
      "figure": None if figure_error else "atlas.png", "figure_error": figure_error,
      "zoo_seconds": round(zoo_s, 1), "grow_seconds": round(grow_s, 1),
      "wall_seconds": round(time.time() - t0, 1)})
  write_json(os.path.join(out, "results.json"), results)
  table.to_csv(os.path.join(out, "results.csv"), index=False)
  print(table.to_string(index=False, float_format="%.3f"))
  print(f"{len(true)} nodes, true edges {true.relation_counts()}; edge accuracy jatlas "
        f"{results['jatlas_edge_acc']:.3f} ({results['jatlas_seconds']:.2f} s), MoTHer "
        f"{results['mother_edge_acc']:.3f} ({results['mother_seconds']:.2f} s); "
        f"{results['wall_seconds']:.0f} s (zoos {zoo_s:.0f} s)")


if __name__ == "__main__":
  main(sys.argv[1:])
