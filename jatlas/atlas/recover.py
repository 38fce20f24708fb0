"""Recover lineage (which model was made from which) from weights alone.

`recover_lineage` (jatlas, MoTHer plus the Atlas priors):
  1. trees: `distances.cluster_models` (kNN single linkage, largest-gap cut); trees
     joined by a documented edge or by a bit-identical tensor are one tree.
  2. per tree: `peak_distance` over the weight matrices (biases left out: short
     vectors whose relative change is mostly noise): per layer the mean of the 4
     largest coordinate changes. Adam fine-tunes move a few coordinates far and
     descendants carry those moves, while the bulk of a fine-tune's change is
     task-driven and shared by every model tuned on similar data, so L2 distance
     (`distance="l2"`, `layer_distance`) often puts a child nearer an uncle or
     grandparent than its parent. With a permutation spec, members far from all
     others in raw weights are first aligned by weight matching
     (`distances.align_outliers`).
  3. quantized models (`quantized.detect_quantized`) become leaves.
  4. merges (`merges.detect_merges`) get one "merge" edge per parent and enter the
     spanning tree as free roots (they may still have children). With a soft
     direction rule, a merge with a parent over half a generation younger than itself
     (score gap, step 7) is dropped: the middle of a chain fits its parent and child.
  5. direction: a rule fitted on the documented edges; else on time order (each model's
     nearest earlier model is its parent); else `direction.tree_consistent_rule` on
     every tree's minimum spanning tree. Where times are known, no edge runs backwards
     in time.
  6. low-rank fine-tunes (`low_rank="auto"`: a model whose difference to one of its
     candidate parents, its 8 nearest models and those sharing a bit-identical tensor
     (LoRA's frozen biases), has numerical rank under half the matrix side): the rank
     of the difference over the typical one is added to the cost of each edge into it
     (non-candidates pay twice the typical rank, or more); its edge is an "adapter".
  7. Chu-Liu/Edmonds per tree on cost(i -> j) = d_ij / d0 + direction_weight x
     max(0, log((1 - P(i -> j)) / P(i -> j))) (d0: the tree's median nearest-neighbour
     distance): only an edge against the likelier direction pays, so a far ancestor
     does not beat the parent for being surely older (with -log P it does); the
     direction term is left out for edges into quantized models; documented edges are
     forced; a merge is never a parent of its own parents. Generation term: with a
     soft rule, s = the rule's score (P(i -> j) = sigmoid(s_j - s_i)) and step = its
     typical gap over one generation (`_generation_step`), edge i -> j also pays
     generation_weight x max(0, 1 - (s_j - s_i) / step)^2: fine-tunes of one parent
     share a drift, so a child is often nearer a sibling than its parent, but a
     sibling sits at the same generation (gap ~0) and pays.
  Confidence of a tree edge: the softmax over the child's candidate parents of
  -cost / temperature, taken at the chosen parent; of a quantized edge, that times the
  quantization score; of a merge edge, the merge test's confidence.

`mother_baseline` is MoTHer as published: Ward clustering of the raw weights
(`weights.trees.cluster_trees`), the min-max normalised max-abs-difference distance
(max over layers), T[i, j] = 1 where j has the higher kurtosis sum, M = D + 0.3 mean(D) T,
Chu-Liu/Edmonds. Every edge it returns is a "finetune".

Edges are dicts {"parent", "child", "relation", "provenance": "recovered",
"confidence"}; documented edges are not repeated.

`node_weights` reads the weights of atlas nodes from their sources (zoo rows, files);
`to_atlas` turns edge dicts into an Atlas.

Usage:
  edges = recover_lineage(models, ids)                       # weights only
  edges = recover_lineage(models, ids, known_edges=[("a", "b")], times=t_M, spec=spec)
  base = mother_baseline(models, ids)
  tensors = node_weights(atlas, ids); recovered = to_atlas(edges, ids)
"""
import functools
from typing import Mapping, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from jatlas.atlas.arborescence import min_arborescence
from jatlas.atlas.direction import (KURTOSIS_SUM, DirectionRule, fit_direction, model_features,
                                    tree_consistent_rule)
from jatlas.atlas.graph import RELATIONS, Atlas
from jatlas.atlas.distances import (align_outliers, cluster_models, diff_rank, layer_distance,
                                    matrix_names, max_abs_diff, normalised_layers, num_models,
                                    peak_distance, stack_models,
                                    weight_names)
from jatlas.atlas.merges import detect_merges
from jatlas.atlas.quantized import detect_quantized
from jatlas.nets.symmetry import PermutationSpec
from jatlas.weights.trees import cluster_trees

RANK_CANDIDATES = 8
P_CLIP = 1e-3
PEAK_TOP = 4


def _edge(parent: str, child: str, relation: str, confidence: float) -> dict:
  return {"parent": parent, "child": child, "relation": relation, "provenance": "recovered",
          "confidence": float(np.clip(confidence, 0.0, 1.0))}


def _known(known_edges, ids: Sequence[str]) -> list[tuple[int, int, str]]:
  """Documented edges as (parent row, child row, relation); unknown ids listed at once."""
  pos, out, missing = {k: i for i, k in enumerate(ids)}, [], []
  for e in known_edges or ():
    p, c, rel = ((e["parent"], e["child"], e.get("relation", "finetune"))
                 if isinstance(e, Mapping) else (e[0], e[1], e[2] if len(e) > 2 else "finetune"))
    if p not in pos or c not in pos:
      missing.append(f"{p}->{c}")
      continue
    out.append((pos[p], pos[c], rel))
  if missing:
    raise ValueError(f"known_edges name ids that are not among the models: {missing[:10]}")
  return out


def _check(tensors, ids, times) -> None:
  m, problems = num_models(tensors), []
  if len(ids) != m:
    problems.append(f"{len(ids)} ids for {m} models")
  if len(set(ids)) != len(ids):
    problems.append("ids are not unique")
  if times is not None and np.shape(times) != (m,):
    problems.append(f"times has shape {np.shape(times)}, expected ({m},)")
  if problems:
    raise ValueError("recover_lineage: " + "; ".join(problems))


def _join(labels_M, known) -> np.ndarray:
  """Trees joined by documented edges become one."""
  if not known:
    return labels_M
  k = labels_M.max() + 1
  a = np.array([labels_M[p] for p, _, _ in known])
  b = np.array([labels_M[c] for _, c, _ in known])
  g = coo_matrix((np.ones(len(a)), (a, b)), shape=(k, k))
  return connected_components(g, directed=False)[1][labels_M]


def _nn_scale(d_NN, mask_N) -> float:
  sub = d_NN[np.ix_(mask_N, mask_N)] + np.diag(np.full(mask_N.sum(), np.inf))
  nn = sub.min(1) if len(sub) > 1 else np.ones(1)
  nn = nn[np.isfinite(nn) & (nn > 0)]
  return float(np.median(nn)) if len(nn) else 1.0


def _mst_edges(d_NN, keep_N) -> np.ndarray:
  rows = np.flatnonzero(keep_N)
  if len(rows) < 2:
    return np.zeros((0, 2), np.int64)
  t = minimum_spanning_tree(np.maximum(d_NN[np.ix_(rows, rows)], 1e-12)).tocoo()
  return np.stack([rows[t.row], rows[t.col]], 1)


def _shared_tensor_pairs(tensors, idx, max_group: int = 64) -> np.ndarray:
  """[K, 2] local (a, b) pairs of models with a bit-identical tensor: a frozen part
  (LoRA leaves biases and norms as they were) names the parent even when the
  trained part moved far. Groups over max_group models (one frozen tensor shared by
  a whole family) are skipped: they say nothing about which one is the parent."""
  pairs = set()
  for name in weight_names(tensors):
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(idx):
      groups.setdefault(np.ascontiguousarray(tensors[name][row]).tobytes(), []).append(i)
    for g in groups.values():
      if 1 < len(g) <= max_group:
        pairs.update((a, b) for a in g for b in g if a != b)
  return np.array(sorted(pairs), np.int64).reshape(-1, 2)


def _local_pairs(pairs_K2, idx, m: int) -> np.ndarray:
  """The pairs of global rows with both ends in idx, as positions in idx."""
  pos = np.full(m, -1)
  pos[idx] = np.arange(len(idx))
  local = pos[pairs_K2]
  return local[(local >= 0).all(1)].reshape(-1, 2)


def _rank_term(tensors, idx, d_NN, shared_K2, every: bool
               ) -> tuple[np.ndarray, np.ndarray] | None:
  """([N, N] cost added to edges into low-rank children, [N, N] mask of low-rank
  parent -> child pairs), or None. Candidates of child j: its RANK_CANDIDATES nearest
  models and those sharing a bit-identical tensor with it (shared_K2, local pairs of
  `_shared_tensor_pairs`). j is low-rank when the difference to a candidate has
  numerical rank under half the matrix side (every child when `every`); edge i -> j
  then costs rank(w_j - w_i) over the typical such rank, and 2 x that for models
  that are no candidate."""
  n = len(idx)
  if n < 2 or not matrix_names(tensors):
    return None
  kc = min(RANK_CANDIDATES, n - 1)
  order = np.argsort(d_NN + np.diag(np.full(n, np.inf)), 1)[:, :kc]
  pairs = np.concatenate([np.stack([order.ravel(), np.repeat(np.arange(n), kc)], 1),
                          shared_K2])
  pairs = np.unique(pairs, axis=0)
  r_K = diff_rank(tensors, idx[pairs])
  best = np.full(n, np.inf)
  np.minimum.at(best, pairs[:, 1], r_K)
  low = np.ones(n, bool) if every else best < 0.5
  if not low.any():
    return None
  r0 = max(float(np.median(best[low])), 1e-6)
  term = np.zeros((n, n))
  term[:, low] = np.maximum(2.0, np.max(r_K) / r0)
  into_low = low[pairs[:, 1]]
  term[pairs[into_low, 0], pairs[into_low, 1]] = r_K[into_low] / r0
  low_pair = np.zeros((n, n), bool)
  low_pair[pairs[:, 0], pairs[:, 1]] = r_K < 0.5
  return term, low_pair


def _confidence(cost_NN, parent_N, temperature: float) -> np.ndarray:
  conf = np.zeros(len(parent_N))
  for j in np.flatnonzero(parent_N >= 0):
    col = cost_NN[:, j]
    ok = np.isfinite(col)
    z = -(col[ok] - col[ok].min()) / temperature
    conf[j] = np.exp(-(col[parent_N[j]] - col[ok].min()) / temperature) / np.exp(z).sum()
  return conf


def _fit_rule(feats, names, known, times, trees, exclude_M) -> DirectionRule:
  """Direction rule from documented edges, else time order, else tree consistency."""
  pairs = [(p, c) for p, c, rel in known if rel != "merge"
           and not exclude_M[p] and not exclude_M[c]]
  if not pairs and times is not None:
    for idx, d in trees:
      t = np.asarray(times)[idx]
      ok = ~exclude_M[idx]
      for j in np.flatnonzero(ok):
        earlier = np.flatnonzero(ok & (t < t[j]))
        if len(earlier):
          pairs.append((idx[earlier[np.argmin(d[earlier, j])]], idx[j]))
  if len(pairs) >= 2:
    p, c = np.array(pairs).T
    return fit_direction(feats[p], feats[c])
  edges = [idx[_mst_edges(d, ~exclude_M[idx])] for idx, d in trees]
  return tree_consistent_rule(feats, np.concatenate(edges) if edges else np.zeros((0, 2)),
                              names)


def _drop_later_parents(found: dict, idx, score_M, step: float) -> dict:
  """Merges found in tree idx, less those with a parent over half a generation younger
  (a chain's middle model fits its parent and child)."""
  return {j: f for j, f in found.items()
          if np.all(score_M[idx[list(f["parents"])]] - score_M[idx[j]] <= step / 2)}


def _generation_step(score_M, trees, exclude_M) -> float | None:
  """Typical rule-score gap of one generation: the upper quartile of |gap| over the
  trees' minimum spanning tree edges (those mix sibling links, gap ~0, with
  parent-child links); None when there are no such edges."""
  edges = [idx[_mst_edges(d, ~exclude_M[idx])] for idx, d in trees]
  edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
  if not len(edges):
    return None
  step = float(np.percentile(np.abs(score_M[edges[:, 1]] - score_M[edges[:, 0]]), 75))
  return step if step > 0 else None


def _tree_edges(idx, d, p_dir, *, quant, q_score, merges_found, known_local, times,
                rank_term, direction_weight, temperature, rule_score=None,
                step=None, generation_weight=0.0) -> list[tuple]:
  """(parent row, child row, relation, confidence) for one tree."""
  n = len(idx)
  d0 = _nn_scale(d, ~quant)
  p = np.clip(p_dir, P_CLIP, 1 - P_CLIP)
  # only the less likely direction pays: a far ancestor is no better a parent for being
  # surely older
  cost = d / d0 + direction_weight * np.maximum(0.0, np.log((1 - p) / p))
  if step is not None:  # a sibling (score gap ~0) or a reversed edge pays
    z = rule_score[None, :] - rule_score[:, None]
    cost = cost + generation_weight * np.maximum(0.0, 1.0 - z / step) ** 2
  cost[:, quant] = (d / d0)[:, quant]
  low_pair = np.zeros((n, n), bool)
  if rank_term is not None:
    cost, low_pair = cost + rank_term[0], rank_term[1]
  if times is not None:
    t = np.asarray(times)[idx]
    cost[t[:, None] > t[None, :]] = np.inf
  np.fill_diagonal(cost, np.inf)
  free = np.zeros(n, bool)
  free[list(merges_found)] = True
  free[[c for _, c, rel in known_local if rel == "merge"]] = True
  forced = [(p, c) for p, c, rel in known_local if rel != "merge"]
  finite = cost[np.isfinite(cost)]
  big = (np.abs(finite).max() + 1.0) * (n + 1) if len(finite) else 1.0
  root_cost = np.where(free, 0.0, big)
  cost_free = cost.copy()
  cost_free[:, free] = np.inf
  for j, found_j in merges_found.items():  # a merge is no parent of its own parents
    cost_free[j, list(found_j["parents"])] = np.inf
  parent = min_arborescence(cost_free, root_cost=root_cost, forced=forced,
                            leaves=np.flatnonzero(quant))
  conf = _confidence(cost_free, parent, temperature)
  documented = {c for _, c, _ in known_local}
  out = []
  for j in np.flatnonzero(parent >= 0):
    if j in documented:
      continue
    rel = "quantized" if quant[j] else ("adapter" if low_pair[parent[j], j] else "finetune")
    c = conf[j] * (q_score[j] if quant[j] else 1.0)
    out.append((idx[parent[j]], idx[j], rel, c))
  for j, found in merges_found.items():
    if j in documented:
      continue
    parents = _drop_base(found, parent)
    out += [(idx[p], idx[j], "merge", found["confidence"]) for p in parents]
  return out


def _drop_base(found: dict, parent_N) -> tuple:
  """A selection (TIES-like) merge's base: the parent that is an ancestor of the others."""
  ps = found["parents"]
  if found["test"] != "selection" or len(ps) < 3:
    return ps
  def ancestors(v):
    out = set()
    while parent_N[v] >= 0 and v not in out:
      v = int(parent_N[v])
      out.add(v)
    return out
  for b in ps:
    if all(b in ancestors(o) for o in ps if o != b):
      return tuple(p for p in ps if p != b)
  return ps


def _distance_fn(distance: str, distance_layers: str):
  fns = {"peak": functools.partial(peak_distance, top=PEAK_TOP), "l2": layer_distance}
  problems = ([f"distance={distance!r}, expected one of {sorted(fns)}"]
              if distance not in fns else [])
  if distance_layers not in ("matrices", "all"):
    problems.append(f"distance_layers={distance_layers!r}, expected 'matrices' or 'all'")
  if problems:
    raise ValueError("recover_lineage: " + "; ".join(problems))
  return fns[distance]


def recover_lineage(models, ids: Sequence[str], *, known_edges=None, times=None,
                    spec: PermutationSpec | None = None, n_trees: int | None = None,
                    low_rank: bool | str = "auto", quantized: bool = True, merges: bool = True,
                    rule: DirectionRule | None = None, direction_weight: float = 1.0,
                    temperature: float = 0.25, generation_weight: float = 3.0,
                    distance: str = "peak", distance_layers: str = "matrices") -> list[dict]:
  """Recovered edges of the models' atlas (module docstring)."""
  tensors = stack_models(models)
  ids = [str(i) for i in ids]
  _check(tensors, ids, times)
  distance_fn = _distance_fn(distance, distance_layers)
  m = num_models(tensors)
  known = _known(known_edges, ids)
  # models sharing a bit-identical tensor (a frozen part) are one family
  shared = _shared_tensor_pairs(tensors, np.arange(m))
  labels = _join(cluster_models(tensors, spec=spec, n_trees=n_trees),
                 known + [(a, b, "") for a, b in shared])
  quant, q_score = detect_quantized(tensors) if quantized else (np.zeros(m, bool), np.zeros(m))
  feats, names = model_features(tensors)
  # biases are short and move as much as kernels in relative terms: they add noise
  dist_names = (matrix_names(tensors) or None) if distance_layers == "matrices" else None
  trees, found, tree_shared = [], {}, {}
  for label in np.unique(labels):
    idx = np.flatnonzero(labels == label)
    d = distance_fn(tensors, idx, names=dist_names)
    moved = False
    if spec is not None:
      tensors, moved = align_outliers(tensors, idx, d, spec)
      d = distance_fn(tensors, idx, names=dist_names) if moved else d
    trees.append((idx, d))
    # a family sharing a tensor lies in one tree; aligned members are hashed anew
    tree_shared[label] = (_shared_tensor_pairs(tensors, idx) if moved
                          else _local_pairs(shared, idx, m))
    if merges and len(idx) >= 3:
      found[label] = detect_merges(normalised_layers(tensors, idx),
                                   exclude=np.flatnonzero(quant[idx]))
  merged = np.zeros(m, bool)
  for (idx, _), label in zip(trees, np.unique(labels)):
    merged[idx[list(found.get(label, {}))]] = True
  rule = rule or _fit_rule(feats, names, known, times, trees, quant | merged)
  score = (feats / rule.scale_F) @ rule.w_F
  step = None if rule.hard else _generation_step(score, trees, quant | merged)
  if step is not None:
    found = {label: _drop_later_parents(found[label], idx, score, step)
             for (idx, _), label in zip(trees, np.unique(labels)) if label in found}
  edges = []
  for (idx, d), label in zip(trees, np.unique(labels)):
    local = {g: i for i, g in enumerate(idx)}
    rank_term = (_rank_term(tensors, idx, d, tree_shared[label], low_rank is True)
                 if low_rank else None)
    edges += _tree_edges(
        idx, d, rule.pairwise(feats[idx]), quant=quant[idx], q_score=q_score[idx],
        merges_found=found.get(label, {}),
        known_local=[(local[p], local[c], r) for p, c, r in known if c in local and p in local],
        times=times, rank_term=rank_term, direction_weight=direction_weight,
        temperature=temperature,
        rule_score=score[idx], step=step, generation_weight=generation_weight)
  return [_edge(ids[p], ids[c], rel, conf) for p, c, rel, conf in edges]


def mother_baseline(models, ids: Sequence[str], *, n_trees: int | None = None,
                    lam: float = 0.3) -> list[dict]:
  """MoTHer as published (module docstring)."""
  tensors = stack_models(models)
  ids = [str(i) for i in ids]
  _check(tensors, ids, None)
  names = weight_names(tensors)
  flat = np.concatenate([tensors[k].reshape(num_models(tensors), -1) for k in names], 1)
  labels = cluster_trees(flat, n_trees=n_trees)
  feats, fnames = model_features(tensors)
  kurt = feats[:, fnames.index(KURTOSIS_SUM)]
  edges = []
  for label in np.unique(labels):
    idx = np.flatnonzero(labels == label)
    if len(idx) < 2:
      continue
    per_layer = max_abs_diff(tensors, idx)
    lo = per_layer.min((1, 2), keepdims=True)
    span = np.maximum(per_layer.max((1, 2), keepdims=True) - lo, 1e-30)
    d = ((per_layer - lo) / span).max(0)
    t = (kurt[idx][None, :] > kurt[idx][:, None]).astype(np.float64)
    cost = d + lam * d.mean() * t
    np.fill_diagonal(cost, np.inf)
    parent = min_arborescence(cost)
    conf = _confidence(cost, parent, max(d.mean(), 1e-12) * 0.25)
    edges += [_edge(ids[idx[parent[j]]], ids[idx[j]], "finetune", conf[j])
              for j in np.flatnonzero(parent >= 0)]
  return edges


def to_atlas(edges, node_ids: Sequence[str], atlas: Atlas | None = None, **graph_attrs) -> Atlas:
  """An Atlas of `node_ids` (added where `atlas` lacks them) with the edge dicts of
  `recover_lineage` / `mother_baseline`; graph_attrs go to `atlas.graph.graph`."""
  atlas = Atlas() if atlas is None else atlas
  for node in node_ids:
    if node not in atlas:
      atlas.add_node(str(node))
  bad = [e.get("relation") for e in edges if e.get("relation") not in RELATIONS]
  if bad:
    raise ValueError(f"to_atlas: relations {sorted(set(map(str, bad)))}, expected {RELATIONS}")
  for e in edges:
    atlas.add_edge(e["parent"], e["child"], e["relation"],
                   provenance=e.get("provenance", "recovered"),
                   confidence=e.get("confidence", 1.0))
  atlas.graph.graph.update(graph_attrs)
  return atlas


def node_weights(atlas: Atlas, node_ids: Sequence[str]) -> dict[str, np.ndarray]:
  """{flat name: [M, ...]} weights of the nodes, read from their sources (zoo rows
  and safetensors files); nodes without readable weights are listed at once."""
  from jatlas.io import load_file  # imports jax and the zoo store: only when read
  from jatlas.zoo.store import Zoo
  sources = [(atlas.graph.nodes[atlas.require(n)]["source"] or {}) for n in node_ids]
  bad = [n for n, s in zip(node_ids, sources) if s.get("kind") not in ("zoo", "file")]
  if bad:
    raise ValueError(f"node_weights: {len(bad)} node(s) have no zoo or file source: {bad[:10]}")
  per_node, zoos = [None] * len(node_ids), {}
  for i, s in enumerate(sources):
    if s["kind"] == "file":
      per_node[i] = load_file(s["path"])
    else:
      zoos.setdefault(s["dir"], []).append(i)
  for d, where in zoos.items():
    zoo = Zoo.open(d)
    names = [k for k in zoo.names if k.startswith("params/")] or list(zoo.names)
    stacked = {k: zoo.stacked(k, [sources[i]["row"] for i in where]) for k in names}
    for j, i in enumerate(where):
      per_node[i] = {k: v[j] for k, v in stacked.items()}
  return stack_models(per_node)
