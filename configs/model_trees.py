"""Model trees on digits: the Model-J recipe (ProbeX, CVPR 2025) made with jatlas's zoo engine.

Four base models (two MLPs and two small CNNs, different seeds) are trained on all
10 digits; each is fine-tuned into one child per random 5-of-10 class subset
(`zoo.parent` = the base zoo: lineage recorded). As in Model-J, a child starts
from its base with a new head for its 5 classes (`zoo.reinit=("head",)`, labels =
positions in the sorted subset) and trains every layer on the examples of its 5
classes only. Target: the child's subset as a 10-dim multi-hot vector, read from
the last hidden layer alone; MLP fc2 kernel [144, 16] and small-CNN conv3 kernel
[3, 3, 16, 16] both read as X [16 units, 144 inputs], so one encoder can be
trained on all trees mixed.

Commands:
  python experiments/model_trees.py --config configs/model_trees.py --out runs/model_trees
  python experiments/model_trees.py --config configs/model_trees.py:smoke --out runs/smoke
  one zoo at a time (families mlp, cnn; the children's zoo.parent defaults to
  runs/model_trees/zoos/<family>_base):
  jatlas zoo train --config configs/model_trees.py:zoo=mlp_base --out runs/model_trees/zoos/mlp_base
  jatlas zoo train --config configs/model_trees.py:zoo=mlp_children \
    --out runs/model_trees/zoos/mlp_children
Expected (default, 2-core AMD EPYC CPU shared with other jobs, 7.5 min: zoos 114 s):
1,004 children (4 trees x 251 subsets, 5-way test accuracy 0.97); element-wise accuracy
(chance 0.5) on 200 test children:
  method  in_tree  cross_tree  mixed  experts        (Model-J anchors: ProbeX 0.705-0.885,
  probex  0.778    0.499       0.771  0.778           dense 0.614-0.713; a linear probe
  dense   0.745    0.494       0.726  0.745           0.844 within a tree, 0.502 across)
  statnn  0.529    0.500       0.481  0.529
Ward clustering finds the 4 trees and routing is 100% (so experts = in_tree exactly).
cross_tree: an expert read on other trees' children (chance), the paper's 0.502.
Mixing all trees costs dense 2 and StatNN 5 points, ProbeX under 1 (4x the data offsets
it). Zero-shot head on 50 subsets never seen: top-1 0.610 routed experts, 0.530 mixed
(chance 0.020). The smoke variant (3 MLP trees x 20 subsets, ProbeX only) takes ~1 min.
"""
import itertools

import ml_collections
import numpy as np

from jatlas.zoo.schema import default_config

FAMILIES = {  # family -> (net, net kwargs, the layer the encoders read)
    "mlp": ("mlp", {"hidden": (144, 16)}, "params/fc2/kernel"),
    "cnn": ("small_cnn", {"channels": (16, 16, 16)}, "params/conv3/kernel"),
}


def class_subsets(n: int, k: int = 5, num_classes: int = 10, seed: int = 0) -> tuple:
  """n distinct random k-of-num_classes subsets (sorted tuples), the same for every tree."""
  combos = list(itertools.combinations(range(num_classes), k))
  order = np.random.default_rng(seed).permutation(len(combos))[:n]
  return tuple(combos[i] for i in order)


def _seed(family: str, stage: int) -> int:
  """Distinct zoo seeds for every family's base (stage 0) and children (stage 1) zoo."""
  return 2 * list(FAMILIES).index(family) + stage


def base_config(family: str, bases: int, epochs: int) -> ml_collections.ConfigDict:
  net, kwargs, _ = FAMILIES[family]
  c = default_config()  # every field and its meaning: jatlas/zoo/schema.py
  c.name = f"model_trees_{family}_base"
  c.tasks.kind = "multiclass"
  c.model.name, c.model.kwargs = net, kwargs
  c.zoo.members, c.zoo.seed = bases, _seed(family, 0)
  c.zoo.epochs, c.zoo.save_epochs = (epochs,), ()
  c.zoo.lr = (3e-3,)
  c.zoo.checkpoint_every = 0  # a zoo of seconds: resuming would cost more than it saves
  return c


def children_config(family: str, bases: int, subsets: tuple, epochs: int,
                    parent: str) -> ml_collections.ConfigDict:
  """bases x subsets members: member i starts from base i % bases and learns subset
  i % len(subsets), so with len(subsets) coprime to bases every base meets every subset."""
  if np.gcd(len(subsets), bases) != 1:
    raise ValueError(f"{len(subsets)} subsets and {bases} bases must be coprime, or some "
                     "base never meets some subset")
  net, kwargs, _ = FAMILIES[family]
  c = default_config()
  c.name = f"model_trees_{family}_children"
  c.tasks.kind, c.tasks.kwargs = "class_subsets", {"subsets": subsets}
  c.model.name, c.model.kwargs = net, kwargs
  c.zoo.members, c.zoo.seed = bases * len(subsets), _seed(family, 1)
  c.zoo.epochs, c.zoo.save_epochs = (epochs,), ()
  c.zoo.lr = (3e-3,)
  # zoo.init_scale scales only the re-initialised head here (the rest comes from the
  # parent): a small new head lets siblings differ by their data more than by the
  # head's random start (at 1.0 a linear probe reads fc2 at 0.55 in-tree, at 0.1 at 0.95)
  c.zoo.init_scale = (0.2,)
  c.zoo.checkpoint_every = 0
  c.zoo.parent, c.zoo.reinit = parent, ("head",)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [a for a in (arg or "").split(",") if a]
  zoo = [a.split("=", 1)[1] for a in parts if a.startswith("zoo=")]
  if [a for a in parts if a != "smoke" and not a.startswith("zoo=")]:
    raise ValueError(f"unknown config variant {arg!r}; expected '', 'smoke', "
                     "'zoo=<family>_base|<family>_children' or 'smoke,zoo=...'")
  smoke = "smoke" in parts
  # smoke: one family of 3 trees, 20 subsets (coprime to 3), short training
  families = ("mlp",) if smoke else tuple(FAMILIES)
  bases, n_subsets = (3, 20) if smoke else (2, 251)
  base_epochs, child_epochs = (10, 2) if smoke else (30, 3)
  c = ml_collections.ConfigDict()
  c.name = "model_trees"
  c.subsets = class_subsets(n_subsets)
  c.families = ml_collections.ConfigDict()
  for fam in families:
    c.families[fam] = ml_collections.ConfigDict({
        "layer": FAMILIES[fam][2],
        "base": base_config(fam, bases, base_epochs),
        "children": children_config(fam, bases, c.subsets, child_epochs,
                                    f"runs/model_trees/zoos/{fam}_base"),
    })
  c.experiment = ml_collections.ConfigDict({
      "seed": 0, "val_fraction": 0.2, "test_fraction": 0.2,   # of each tree's children
      "methods": ("probex",) if smoke else ("probex", "dense", "statnn"),
      # two seeds per encoder: one per CPU core at no extra wall time; the best on val is kept
      "encoder": {"epochs": 20 if smoke else 200, "patience": 10, "eval_every": 5,
                  "seeds": (0, 1)},
      # in-tree ProbeX on this zoo: 32-wide at lr 1e-3 0.732, 64-wide at 3e-3 0.761, 128-wide
      # at 1e-3 0.779 (at 10x the time); dense 0.730
      "probex": ({"n_probes": 16, "proj_dim": 16, "rep_dim": 16} if smoke else
                 {"n_probes": 64, "proj_dim": 64, "rep_dim": 64, "lr": 3e-3, "epochs": 300}),
      # subsets (not models) held out: val_fraction picks the epoch, unseen_fraction tests
      "zeroshot": {"unseen_fraction": 0.2, "val_fraction": 0.1, "emb_dim": 64, "rep_dim": 64,
                   "mixed": not smoke},   # also one zero-shot encoder on all trees
  })
  if zoo:
    fam, stage = zoo[0].rsplit("_", 1)
    if fam not in c.families or stage not in ("base", "children"):
      raise ValueError(f"zoo={zoo[0]!r}: expected one of "
                       f"{[f'{f}_{s}' for f in c.families for s in ('base', 'children')]}")
    return c.families[fam][stage]
  return c
