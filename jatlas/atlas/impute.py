"""Fill in missing model attributes from graph neighbours and from weights.

A field is missing on a model when it is absent or None (a NaN trait too). Evidence
is every present value that this module did not impute; one pass, so a fill never
feeds another.
- categorical (meta, e.g. license, task): a weighted vote over the models within
  `hops` lineage links ("graph_vote"), confidence = the winner's share of the vote.
- numeric (traits, e.g. test_acc): the weighted mean of the `k` closest models
  reached through a parent (parents, siblings, grandparents, ...; children only when
  none of those has a value: a root) ("graph_knn"), confidence = their mean closeness.
- closeness of a model: its best path's SIBLING / FURTHER factor (1 for a parent or
  child, SIBLING for a sibling, FURTHER for other 2-link models, halved per extra
  link) times every edge's confidence times RELATION_WEIGHT (a merge child is only
  partly each parent).
- weights ({id: flat dict or params pytree}): models the graph cannot place get the
  weight encoder's prediction ("encoder"): by default StatNN statistics
  (`weights.statnn_features`) + scikit-learn (standardised logistic regression /
  ridge); `encoder` may be an estimator with fit/predict on feature vectors, a
  features function tensors {name: [R, ...]} -> [R, F], a `jatlas.weights` Encoder
  (fitted on the stacked tensors), or {field: any of those}.
- the rest: the majority value / mean of the field ("baseline").
Fills are written into traits/meta but not into `documented` (they read as
inferred), and recorded in meta["imputed"] = {field: {"method", "confidence"}}: the
atlas files keep only the schema's node keys, and meta travels with them.
Method "auto" is graph, then encoder, then baseline; "graph", "encoder" and
"baseline" use that source alone (then the baseline).

Usage:
  filled, report = impute(atlas)                        # every field, graph first
  filled, report = impute(atlas, ["license", "test_acc"], k=3, hops=2)
  filled, report = impute(atlas, ["task"], weights={node_id: params, ...})
  filled.node("org/ft")["meta"]["imputed"]  # {"license": {"method": "graph_vote", ...}}
  evaluate_imputation(atlas, ["license", "test_acc"], mask_fraction=0.3)   # vs baseline
"""
import copy
import heapq
import json
import math
from collections import Counter
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from jatlas.atlas.distances import stack_models, weight_names
from jatlas.atlas.graph import Atlas, UnknownNodeError, check_choice, close_names, is_finite
from jatlas.weights.encoder import Encoder
from jatlas.weights.features import statnn_features

IMPUTED = "imputed"    # the meta key of the per-node record of imputed fields
METHODS = ("auto", "graph", "encoder", "baseline")
SIBLING = 0.5          # closeness of a sibling (a parent or child has 1)
FURTHER = 0.25         # of any other model 2 links away; halves with each further link
RELATION_WEIGHT = {"merge": 0.5}
REPORT_COLUMNS = ("id", "field", "kind", "method", "value", "confidence", "evidence")
EVAL_COLUMNS = ("field", "kind", "method", "n_masked", "filled_by", "accuracy",
                "baseline_accuracy", "mae", "baseline_mae", "r2", "baseline_r2")


# ------------------------------------------------------------------ fields

def resolve_fields(atlas: Atlas, fields=None) -> dict[str, tuple[str, str]]:
  """{label: ("traits" | "meta", name)} for `fields` (default: every field of the
  atlas); a name that is both a trait and a meta field is said "traits.x" / "meta.x"."""
  known = {"traits": set(), "meta": set()}
  for _, d in atlas.graph.nodes(data=True):
    known["traits"] |= set(d["traits"])
    known["meta"] |= set(d["meta"]) - {IMPUTED}
  both = known["traits"] & known["meta"]
  labels = {(f"{w}.{n}" if n in both else n): (w, n) for w in ("traits", "meta")
            for n in sorted(known[w])}
  if fields is None:
    return labels
  fields = [fields] if isinstance(fields, str) else list(fields)
  problems = [f"field {f!r} is a trait and a meta field: say 'traits.{f}' or 'meta.{f}'"
              if f in both else f"unknown field {f!r}{close_names(f, labels)}"
              for f in fields if f not in labels]
  if problems:
    raise ValueError("; ".join(problems) + f" (the atlas has fields {sorted(labels)})")
  return {f: labels[f] for f in fields}


def _missing(d: dict, where: str, name: str) -> bool:
  value = d[where].get(name)
  return value is None or (isinstance(value, float) and math.isnan(value))


def _evidence(atlas: Atlas, label: str, where: str, name: str) -> dict:
  """{model: value} of the models whose value was not imputed (numeric: finite)."""
  out = {}
  for n, d in atlas.graph.nodes(data=True):
    if _missing(d, where, name) or label in (d["meta"].get(IMPUTED) or {}):
      continue
    value = d[where][name]
    if where == "meta" or is_finite(value):
      out[n] = value
  return out


def _key(value) -> str:
  return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------ graph

def adjacency(atlas: Atlas) -> dict[str, list[tuple[str, bool, float]]]:
  """{model: [(linked model, is its parent, edge confidence x RELATION_WEIGHT)]}."""
  g = atlas.graph
  weight = lambda e: float(e.get("confidence", 1.0)) * RELATION_WEIGHT.get(e.get("relation"), 1.0)
  return {n: [*((p, True, weight(e)) for p, e in g.pred[n].items()),
              *((c, False, weight(e)) for c, e in g.succ[n].items())] for n in g}


def neighbourhood(atlas: Atlas, node_id: str, hops: int = 2, *, upward: bool = False,
                  adj: dict | None = None) -> dict[str, float]:
  """{model: closeness} of the models within `hops` lineage links of `node_id`, by
  each one's closest path (module docstring); upward: only paths through a parent.
  adj: `adjacency(atlas)`, when many neighbourhoods are taken."""
  adj = adjacency(atlas) if adj is None else adj
  frontier = {n: w for n, up, w in adj[atlas.require(node_id)] if up or not upward}
  parents, best = {n for n, up, _ in adj[node_id] if up}, dict(frontier)
  for level in range(2, hops + 1):
    # closeness = edge product x a factor of the path's shape; from level 3 on the
    # factor depends on the length alone, so the best product per model is enough
    further, nxt = FURTHER * 0.5 ** (level - 2), {}
    for at, w in frontier.items():
      sibling = SIBLING if level == 2 and at in parents else further
      for n, up, w_e in adj[at]:
        if n == node_id:
          continue
        w_n = w * w_e
        c = w_n * (further if up else sibling)
        if c > best.get(n, 0.0):
          best[n] = c
        if w_n > nxt.get(n, 0.0):
          nxt[n] = w_n
    frontier = nxt
  return best


def _graph_fill(near: dict, evidence: dict, kind: str, k: int):
  """(value, method, confidence, evidence count) from the neighbours `near`
  ({model: closeness}), or None when none of them has a value. Categorical
  evidence comes as `_key`s."""
  near = [(c, n) for n, c in near.items() if c > 0 and n in evidence]
  if not near:
    return None
  if kind == "categorical":
    votes = Counter()
    for c, n in near:
      votes[evidence[n]] += c
    win = min(votes, key=lambda v: (-votes[v], v))
    return json.loads(win), "graph_vote", votes[win] / sum(votes.values()), len(near)
  top = heapq.nsmallest(k, near, key=lambda cn: (-cn[0], cn[1]))
  w_K = np.array([c for c, _ in top])
  v_K = np.array([evidence[n] for _, n in top], np.float64)
  return float(w_K @ v_K / w_K.sum()), "graph_knn", float(w_K.mean()), len(top)


def _graph_fills(atlas, todo: dict, evidence: dict, kinds: dict, k: int, hops: int) -> dict:
  """{(label, model): fill} for todo {label: [models]}. Numeric fields read the
  models reached through a parent, or, where none has a value (a root), every
  neighbour."""
  need = {}
  for label, nodes in todo.items():
    for n in nodes:
      need.setdefault(n, []).append(label)
  fills, adj = {}, adjacency(atlas)
  evidence = {f: {n: _key(v) for n, v in e.items()} if kinds[f] == "categorical" else e
              for f, e in evidence.items()}
  for n, labels in need.items():
    near = neighbourhood(atlas, n, hops, adj=adj)
    # without children every path starts at a parent
    up = None if atlas.graph.out_degree(n) else near
    for label in labels:
      if kinds[label] == "numeric":
        up = neighbourhood(atlas, n, hops, upward=True, adj=adj) if up is None else up
        fill = _graph_fill(up, evidence[label], "numeric", k)
      else:
        fill = None
      fill = fill or _graph_fill(near, evidence[label], kinds[label], k)
      if fill is not None:
        fills[label, n] = fill
  return fills


def _baseline(evidence: dict, kind: str):
  if kind == "numeric":
    return float(np.mean(list(evidence.values()))), "baseline", None, len(evidence)
  counts = Counter(_key(v) for v in evidence.values())
  win = min(counts, key=lambda v: (-counts[v], v))
  return json.loads(win), "baseline", counts[win] / len(evidence), len(evidence)


# ------------------------------------------------------------------ weights

def stack_weights(atlas: Atlas, weights: Mapping) -> tuple[list[str], dict]:
  """(ids in atlas order, {tensor name: [R, ...]}) of the models in `weights`."""
  unknown = [n for n in weights if n not in atlas.graph]
  if unknown:
    raise UnknownNodeError(f"weights: {len(unknown)} id(s) not in the atlas {unknown[:5]}"
                           + close_names(unknown[0], atlas.graph.nodes))
  ids = [n for n in atlas.graph if n in weights]
  tensors = stack_models([weights[n] for n in ids])
  return ids, {n: tensors[n] for n in weight_names(tensors)}


def default_model(kind: str):
  """The scikit-learn model on StatNN features: logistic regression or ridge."""
  if kind == "categorical":
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


def _fresh(model):
  try:
    return clone(model)
  except TypeError:  # not a scikit-learn estimator
    return copy.deepcopy(model)


def _features(fn, tensors: dict) -> np.ndarray:
  x = fn(tensors)
  x_RF = np.asarray(x[0] if isinstance(x, tuple) else x, np.float64)
  r = len(next(iter(tensors.values())))
  if x_RF.ndim != 2 or len(x_RF) != r:
    raise ValueError(f"encoder features: expected shape [{r}, F], got {x_RF.shape}")
  return x_RF


def _encoder_fit_predict(encoder, kind: str, tensors: dict, train_R, y_R, pred_P):
  """(predictions [P], confidences [P] or None) of `encoder` trained on rows train_R."""
  take = lambda rows: {n: t[rows] for n, t in tensors.items()}
  if isinstance(encoder, Encoder):
    enc = copy.deepcopy(encoder).fit(take(train_R), y_R,
                                     task="multiclass" if kind == "categorical" else "regression")
    return enc.predict(take(pred_P)), None
  if callable(encoder) and not hasattr(encoder, "fit"):
    fn, model = encoder, default_model(kind)
  elif encoder is None or (hasattr(encoder, "fit") and hasattr(encoder, "predict")):
    fn, model = statnn_features, default_model(kind) if encoder is None else _fresh(encoder)
  else:
    raise TypeError(f"encoder: {type(encoder).__name__} has no fit/predict and is not a "
                    f"features function (module docstring lists what is accepted)")
  x_RF = _features(fn, tensors)
  model.fit(x_RF[train_R], y_R)
  x_PF = x_RF[pred_P]
  conf = model.predict_proba(x_PF).max(1) if (kind == "categorical" and
                                              hasattr(model, "predict_proba")) else None
  return model.predict(x_PF), conf


def _encoder_fills(encoder, kind, stacked, evidence, targets) -> dict:
  """{model: fill} for the `targets` with weights, from the models with weights and a value."""
  ids, tensors = stacked
  row = {n: i for i, n in enumerate(ids)}
  train = [n for n in ids if n in evidence]
  pred = [n for n in targets if n in row]
  if len(train) < 2 or not pred:
    return {}
  y = [_key(evidence[n]) if kind == "categorical" else float(evidence[n]) for n in train]
  if kind == "categorical" and len(set(y)) == 1:
    return {n: (json.loads(y[0]), "encoder", 1.0, len(train)) for n in pred}
  y_P, conf_P = _encoder_fit_predict(encoder, kind, tensors, np.array([row[n] for n in train]),
                                     np.array(y), np.array([row[n] for n in pred]))
  return {n: (json.loads(str(v)) if kind == "categorical" else float(v), "encoder",
              None if conf_P is None else float(conf_P[i]), len(train))
          for i, (n, v) in enumerate(zip(pred, y_P))}


# ------------------------------------------------------------------ impute

def _check_args(spec, k, hops, method, encoder, weights) -> None:
  check_choice("method", method, METHODS)
  problems = [f"{name}={v!r}: expected an int >= 1" for name, v in (("k", k), ("hops", hops))
              if not isinstance(v, int) or v < 1]
  if method == "encoder" and not weights:
    problems.append("method='encoder' needs weights={node id: params}")
  if isinstance(encoder, Mapping):
    problems += [f"encoder for unknown field {f!r}{close_names(f, spec)}"
                 for f in encoder if f not in spec]
  if problems:
    raise ValueError("impute: " + "; ".join(problems))


def _fill_field(out, label, where, name, todo, evidence, fills, *, method, encoder,
                stacked) -> list:
  """Writes the fills of one field into `out` (graph, then encoder, then baseline)."""
  kind = "numeric" if where == "traits" else "categorical"
  fills = {n: fills[label, n] for n in todo if (label, n) in fills}
  if method in ("auto", "encoder") and stacked is not None:
    enc = encoder.get(label) if isinstance(encoder, Mapping) else encoder
    fills.update(_encoder_fills(enc, kind, stacked, evidence,
                                [n for n in todo if n not in fills]))
  base, rows = _baseline(evidence, kind), []
  for n in todo:
    value, how, conf, count = fills.get(n, base)
    d = out.graph.nodes[n]
    d[where][name] = value
    d["documented"] = [f for f in d["documented"] if f != name]
    d["meta"].setdefault(IMPUTED, {})[label] = {"method": how, "confidence": conf}
    rows.append({"id": n, "field": label, "kind": kind, "method": how, "value": value,
                 "confidence": conf, "evidence": count})
  return rows


def impute(atlas: Atlas, fields: Iterable[str] | str | None = None, *, k: int = 5,
           hops: int = 2, encoder=None, weights: Mapping | None = None,
           method: str = "auto") -> tuple[Atlas, pd.DataFrame]:
  """(a copy of `atlas` with every missing value of `fields` filled, report: one row
  per fill: id, field, kind, method, value, confidence, evidence (how many models it
  rests on)). See the module docstring for the sources and `method`; a field that
  no model has a value for is left missing."""
  spec = resolve_fields(atlas, fields)
  _check_args(spec, k, hops, method, encoder, weights)
  stacked = stack_weights(atlas, weights) if weights else None
  kinds = {f: "numeric" if w == "traits" else "categorical" for f, (w, _) in spec.items()}
  evidence = {f: _evidence(atlas, f, w, n) for f, (w, n) in spec.items()}
  todo = {f: [m for m, d in atlas.graph.nodes(data=True) if _missing(d, w, n)]
          if evidence[f] else [] for f, (w, n) in spec.items()}
  fills = (_graph_fills(atlas, todo, evidence, kinds, k, hops)
           if method in ("auto", "graph") else {})
  out, rows = type(atlas)(copy.deepcopy(atlas.graph)), []
  for label, (where, name) in spec.items():
    rows += _fill_field(out, label, where, name, todo[label], evidence[label], fills,
                        method=method, encoder=encoder, stacked=stacked)
  return out, pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


# ------------------------------------------------------------------ evaluate

def _hide(atlas: Atlas, where: str, name: str, hidden: Iterable[str]) -> Atlas:
  masked = type(atlas)(copy.deepcopy(atlas.graph))
  for n in hidden:
    d = masked.graph.nodes[n]
    d[where].pop(name, None)
    d["documented"] = [f for f in d["documented"] if f != name]
  return masked


def _scores(kind: str, truth: list, pred: list, prefix: str = "") -> dict:
  if kind == "categorical":
    return {f"{prefix}accuracy": float(np.mean([_key(t) == _key(p)
                                                for t, p in zip(truth, pred)]))}
  t_N, p_N = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
  ss_tot = float(((t_N - t_N.mean()) ** 2).sum())
  return {f"{prefix}mae": float(np.abs(t_N - p_N).mean()),
          f"{prefix}r2": 1.0 - float(((t_N - p_N) ** 2).sum()) / ss_tot if ss_tot else math.nan}


def evaluate_imputation(atlas: Atlas, fields: Iterable[str] | str | None = None, *,
                        mask_fraction: float = 0.3, seed: int = 0, method: str = "auto",
                        k: int = 5, hops: int = 2, encoder=None,
                        weights: Mapping | None = None) -> pd.DataFrame:
  """Hides a random `mask_fraction` of each field's documented values, imputes them
  with `method`, and scores them against the majority/mean baseline. One row per
  field: n_masked, filled_by ("graph_vote:27 baseline:3"), accuracy (categorical) or
  mae and r2 (numeric), each beside its baseline_ value."""
  if not 0.0 < mask_fraction < 1.0:
    raise ValueError(f"mask_fraction={mask_fraction}: expected a fraction in (0, 1)")
  spec = resolve_fields(atlas, fields)
  rng, rows = np.random.default_rng(seed), []
  for label, (where, name) in spec.items():
    kind = "numeric" if where == "traits" else "categorical"
    docs = [n for n in _evidence(atlas, label, where, name)
            if name in atlas.graph.nodes[n]["documented"]]
    n_mask = min(int(round(mask_fraction * len(docs))), len(docs) - 1)
    row = {"field": label, "kind": kind, "method": method, "n_masked": max(n_mask, 0)}
    if n_mask < 1:
      rows.append(row)
      continue
    hidden = [docs[i] for i in sorted(rng.choice(len(docs), n_mask, replace=False))]
    masked = _hide(atlas, where, name, hidden)
    filled, report = impute(masked, [label], method=method, k=k, hops=hops, encoder=encoder,
                            weights=weights)
    base, _ = impute(masked, [label], method="baseline")
    how = report.set_index("id").loc[hidden, "method"]
    truth = [atlas.graph.nodes[n][where][name] for n in hidden]
    pick = lambda a: [a.graph.nodes[n][where][name] for n in hidden]
    row["filled_by"] = " ".join(f"{m}:{c}" for m, c in sorted(Counter(how).items()))
    rows.append({**row, **_scores(kind, truth, pick(filled)),
                 **_scores(kind, truth, pick(base), "baseline_")})
  return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
