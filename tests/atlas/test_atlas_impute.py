"""Attribute imputation: hand-computed votes and kNN means, planted trees where graph
imputation must beat the majority/mean baseline, planted weights for the encoder."""
import math

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from jatlas.atlas.graph import Atlas, UnknownNodeError
from jatlas.atlas.impute import (IMPUTED, evaluate_imputation, impute, neighbourhood,
                                 resolve_fields)

LICENSES = ["mit", "apache-2.0", "gpl-3.0", "cc-by-4.0"]


def planted_trees(seed=0, n_trees=8, fan=3, depth=3, flip=0.1, drift=0.01) -> Atlas:
  """Trees whose license is inherited (re-drawn with prob. `flip`) and whose test_acc
  drifts by N(0, drift) along every edge; roots' licenses are balanced."""
  rng, a = np.random.default_rng(seed), Atlas()
  for t in range(n_trees):
    frontier = [f"t{t}"]
    a.add_node(frontier[0], traits={"test_acc": float(rng.uniform(0.4, 0.9))},
               meta={"license": LICENSES[t % 4]})
    for _ in range(depth):
      nxt = []
      for p in frontier:
        for j in range(fan):
          parent = a.graph.nodes[p]
          lic = (parent["meta"]["license"] if rng.random() > flip
                 else LICENSES[rng.integers(4)])
          acc = parent["traits"]["test_acc"] + float(rng.normal(0, drift))
          a.add_node(f"{p}.{j}", traits={"test_acc": acc}, meta={"license": lic})
          a.add_edge(p, f"{p}.{j}", "finetune")
          nxt.append(f"{p}.{j}")
      frontier = nxt
  return a


def planted_weights(seed=0, n=48):
  """Isolated models whose kernel mean encodes the license and whose kernel std is
  test_acc - 0.4."""
  rng, a, w = np.random.default_rng(seed), Atlas(), {}
  for i in range(n):
    c, s = i % 3, float(rng.uniform(0.05, 0.5))
    a.add_node(f"m{i:02d}", traits={"test_acc": 0.4 + s}, meta={"license": LICENSES[c]})
    w[f"m{i:02d}"] = {"params": {"dense": {
        "kernel": (c - 1) * 0.5 + s * rng.normal(size=(6, 4)),
        "bias": rng.normal(0, 0.05, 4)}}}
  return a, w


# p (mit, 0.8) -> x (nothing; edge confidence 0.5), s1 (gpl, 0.6), s2 (gpl), s3 (gpl)
# x -> c1 (apache), c2 (apache; adapter);  q (gpl, 0.2) -> y (nothing; quantized);  lone
@pytest.fixture
def small():
  a = Atlas()
  a.add_node("p", traits={"test_acc": 0.8}, meta={"license": "mit"})
  a.add_node("x", traits={}, meta={})
  a.add_node("s1", traits={"test_acc": 0.6}, meta={"license": "gpl-3.0"})
  for n in ("s2", "s3"):
    a.add_node(n, meta={"license": "gpl-3.0"})
  for n in ("c1", "c2"):
    a.add_node(n, meta={"license": "apache-2.0"})
  a.add_node("q", traits={"test_acc": 0.2}, meta={"license": "gpl-3.0"})
  a.add_node("y")
  a.add_node("lone")
  a.add_edge("p", "x", "finetune", confidence=0.5)
  for n in ("s1", "s2", "s3"):
    a.add_edge("p", n, "finetune")
  a.add_edge("x", "c1", "finetune")
  a.add_edge("x", "c2", "adapter")
  a.add_edge("q", "y", "quantized")
  return a


def test_neighbourhood_closeness(small):
  near = neighbourhood(small, "x", hops=2)
  assert near == {"p": 0.5, "c1": 1.0, "c2": 1.0,   # the edge p -> x has confidence 0.5
                  "s1": 0.5 * 0.5, "s2": 0.25, "s3": 0.25}   # sibling factor x 0.5
  assert neighbourhood(small, "x", hops=1) == {"p": 0.5, "c1": 1.0, "c2": 1.0}
  assert neighbourhood(small, "x", hops=2, upward=True) == {"p": 0.5, "s1": 0.25,
                                                            "s2": 0.25, "s3": 0.25}
  assert neighbourhood(small, "c1", hops=2) == {"x": 1.0, "c2": 0.5, "p": 0.25 * 0.5}
  assert neighbourhood(small, "c1", hops=3)["s1"] == 0.125 * 0.5   # 3 links
  assert neighbourhood(small, "lone", hops=3) == {}


def test_vote_and_knn_by_hand(small):
  filled, report = impute(small, ["license", "test_acc"], hops=2)
  x = filled.node("x")
  # votes: apache 1 + 1 (children), mit 0.5 (parent), gpl 3 x 0.25 (siblings)
  assert x["meta"]["license"] == "apache-2.0"
  assert x["meta"][IMPUTED]["license"] == {"method": "graph_vote",
                                           "confidence": pytest.approx(2 / 3.25)}
  # through a parent only: p (0.5) and s1 (0.25); children have no test_acc
  assert x["traits"]["test_acc"] == pytest.approx((0.5 * 0.8 + 0.25 * 0.6) / 0.75)
  assert x["meta"][IMPUTED]["test_acc"]["method"] == "graph_knn"
  assert filled.node("y")["traits"]["test_acc"] == pytest.approx(0.2)
  # no neighbour with a value: majority / mean of the atlas
  lone = filled.node("lone")
  assert lone["meta"]["license"] == "gpl-3.0"
  assert lone["meta"][IMPUTED]["license"] == {"method": "baseline", "confidence": 4 / 7}
  assert lone["traits"]["test_acc"] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
  assert lone["meta"][IMPUTED]["test_acc"] == {"method": "baseline", "confidence": None}
  row = report.set_index(["id", "field"]).loc[("x", "license")]
  assert row["method"] == "graph_vote" and row["evidence"] == 6
  # k=1: only the closest model with a value (p); hops=1: siblings drop out
  assert impute(small, ["test_acc"], k=1)[0].node("x")["traits"]["test_acc"] == 0.8
  one, _ = impute(small, ["license"], hops=1)
  assert one.node("x")["meta"][IMPUTED]["license"]["confidence"] == pytest.approx(2 / 2.5)


def test_roots_use_children_and_merge_weight():
  a = Atlas()
  a.add_node("r")
  a.add_node("c", traits={"acc": 0.5})
  a.add_edge("r", "c", "finetune")
  a.add_node("m")
  for n, v, task in (("m1", 0.2, "a"), ("m2", 0.4, "b")):
    a.add_node(n, traits={"acc": v}, meta={"task": task})
    a.add_edge(n, "m", "merge")
  a.add_node("k", meta={"task": "b"})
  a.add_edge("m", "k", "finetune")
  filled, _ = impute(a, ["acc", "task"])
  assert filled.node("r")["traits"]["acc"] == 0.5      # a root: from its child
  assert filled.node("m")["traits"]["acc"] == pytest.approx(0.3)
  # parents count 0.5 each (merge), the child 1
  assert filled.node("m")["meta"]["task"] == "b"
  assert filled.node("m")["meta"][IMPUTED]["task"]["confidence"] == pytest.approx(1.5 / 2)


def test_planted_trees_beat_baseline():
  table = evaluate_imputation(planted_trees(seed=0), ["license", "test_acc"],
                              mask_fraction=0.3, seed=0).set_index("field")
  lic, acc = table.loc["license"], table.loc["test_acc"]
  assert lic["n_masked"] == acc["n_masked"] == 96
  assert lic["accuracy"] >= lic["baseline_accuracy"] + 0.5      # 0.91 vs 0.22
  assert acc["mae"] <= 0.2 * acc["baseline_mae"]                 # 0.009 vs 0.119
  assert acc["r2"] > 0.95 and abs(acc["baseline_r2"]) < 0.05
  assert "graph_vote" in lic["filled_by"] and "graph_knn" in acc["filled_by"]
  base = evaluate_imputation(planted_trees(seed=0), ["license"], seed=0,
                             method="baseline").iloc[0]
  assert base["accuracy"] == base["baseline_accuracy"] == lic["baseline_accuracy"]


def test_imputed_fields_are_inferred_and_documented_kept(tmp_path):
  a = planted_trees(seed=1, n_trees=4, depth=2)
  rng = np.random.default_rng(0)
  hidden = sorted(str(n) for n in rng.choice(sorted(a.graph), 15, replace=False))
  other = next(n for n in sorted(a.graph) if n not in hidden)
  for n in hidden:
    d = a.graph.nodes[n]
    d["meta"].pop("license")
    d["traits"]["test_acc"] = None if n < hidden[7] else math.nan
    d["documented"] = []
  a.add_node(other, meta={"license": "inferred-elsewhere"}, documented=[])
  assert a.graph.nodes[other]["documented"] == ["test_acc"]
  before = a.to_json()
  filled, report = impute(a)
  assert a.to_json() == before                       # the input is untouched
  assert sorted(report["id"].unique()) == hidden
  for n in a.graph:
    old, new = a.graph.nodes[n], filled.graph.nodes[n]
    if n in hidden:
      assert new["documented"] == [] and set(new["meta"][IMPUTED]) == {"license", "test_acc"}
      # a present undocumented value is evidence too
      assert new["meta"]["license"] in [*LICENSES, "inferred-elsewhere"]
      assert 0.3 < new["traits"]["test_acc"] < 1.0
    else:
      assert new == old and IMPUTED not in new["meta"]
  assert filled.node(other)["meta"]["license"] == "inferred-elsewhere"
  filled.save(str(tmp_path / "a.json"))
  again = Atlas.load(str(tmp_path / "a.json"))
  assert again.node(hidden[0])["meta"][IMPUTED] == filled.node(hidden[0])["meta"][IMPUTED]
  assert resolve_fields(filled) == {"license": ("meta", "license"),
                                    "test_acc": ("traits", "test_acc")}
  twice, report2 = impute(filled)                    # nothing left to fill
  assert len(report2) == 0 and twice.to_json() == filled.to_json()


def test_unknown_field_and_bad_arguments(small):
  with pytest.raises(ValueError, match=r"unknown field 'licence'; did you mean 'license'\?"):
    impute(small, ["licence", "test_acc"])
  with pytest.raises(ValueError, match=r"'licnse'.*'tst_acc'"):
    impute(small, ["licnse", "tst_acc"])
  with pytest.raises(ValueError, match=r"method 'graf'.*did you mean 'graph'"):
    impute(small, method="graf")
  with pytest.raises(ValueError, match=r"k=0.*hops=0"):
    impute(small, k=0, hops=0)
  with pytest.raises(ValueError, match="needs weights"):
    impute(small, method="encoder")
  with pytest.raises(UnknownNodeError, match="did you mean 'p'"):
    impute(small, weights={"pp": {"w": np.zeros((2, 2))}})
  with pytest.raises(ValueError, match="do not share one structure"):
    impute(small, weights={"p": {"w": np.zeros((2, 2))}, "x": {"w": np.zeros((3, 2))}})
  with pytest.raises(ValueError, match="mask_fraction"):
    evaluate_imputation(small, ["license"], mask_fraction=1.0)
  both = Atlas()
  both.add_node("a", traits={"size": 1.0}, meta={"size": "small"})
  with pytest.raises(ValueError, match="say 'traits.size' or 'meta.size'"):
    impute(both, ["size"])
  assert set(resolve_fields(both)) == {"traits.size", "meta.size"}


def test_weight_encoder_beats_baseline():
  a, w = planted_weights(seed=0)
  table = evaluate_imputation(a, ["license", "test_acc"], weights=w, seed=0).set_index("field")
  lic, acc = table.loc["license"], table.loc["test_acc"]
  assert lic["filled_by"] == acc["filled_by"] == "encoder:14"   # no graph neighbours
  assert lic["accuracy"] >= lic["baseline_accuracy"] + 0.5      # 0.93 vs 0.29
  assert acc["mae"] <= 0.5 * acc["baseline_mae"] and acc["r2"] > 0.7


def test_encoder_kinds_and_graph_first():
  a, w = planted_weights(seed=1, n=30)
  for n in ("m00", "m01", "m02"):
    a.graph.nodes[n]["meta"].pop("license")
  a.add_node("extra", meta={"license": "mit"})           # no weights: baseline or graph
  a.add_node("extra2")
  a.add_edge("m03", "m00", "finetune")                   # m03 (mit) is m00's parent
  seen = []

  def mean_only(tensors):
    seen.append({n: t.shape for n, t in tensors.items()})
    return tensors["params/dense/kernel"].reshape(len(tensors["params/dense/kernel"]), -1
                                                  ).mean(1, keepdims=True)

  for encoder in (mean_only, KNeighborsClassifier(1), {"license": mean_only}):
    filled, report = impute(a, ["license"], weights=w, encoder=encoder)
    how = dict(zip(report["id"], report["method"]))
    assert how == {"m00": "graph_vote", "m01": "encoder", "m02": "encoder",
                   "extra2": "baseline"}
    assert [filled.node(n)["meta"]["license"] for n in ("m00", "m01", "m02")] == \
        ["mit", "apache-2.0", "gpl-3.0"]
  assert seen[0] == {"params/dense/bias": (30, 4), "params/dense/kernel": (30, 6, 4)}
  only, report = impute(a, ["license"], weights=w, method="encoder")
  assert set(report["method"]) == {"encoder", "baseline"}
  assert only.node("m00")["meta"]["license"] == "mit"   # from the weights now
  with pytest.raises(ValueError, match="encoder for unknown field 'licens'"):
    impute(a, weights=w, encoder={"licens": mean_only})
  with pytest.raises(TypeError, match="no fit/predict"):
    impute(a, ["license"], weights=w, encoder=42)


def test_jatlas_encoder_as_weight_encoder():
  from jatlas.weights import make_encoder
  a, w = planted_weights(seed=0)
  row = evaluate_imputation(a, ["license"], weights=w,
                            encoder=make_encoder("statnn", epochs=20)).iloc[0]
  assert row["filled_by"] == "encoder:14"
  assert row["accuracy"] >= row["baseline_accuracy"] + 0.25      # 0.71 vs 0.29
