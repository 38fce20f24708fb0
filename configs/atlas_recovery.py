"""Model Atlas recovery (Horwitz et al. 2025, arXiv 2503.10633; MoTHer, arXiv 2405.18432)
on a synthetic atlas grown with jatlas's zoo engine.

Digit MLPs (hidden 32-32). Roots: `roots` members of one zoo (different seeds, all 10
digits). Fans: every root fine-tuned into `fan` children on random class subsets
(keeping the 10-way head, `relabel=False`), one zoo with the roots' zoo as parent; a
"snake": the first `snake` fan children fine-tuned again, and again, and again (three
zoos, each the parent of the next, depth 3 below the fan); a second fan of `fan2`
siblings below every first snake model. Then, outside the zoos: low-rank fine-tunes
(only a rank-r update of every kernel trains, the parent frozen: a population on the
engine), int8-quantized leaves (per-channel symmetric quantize-dequantize) and merges
of 2-3 siblings (`jatlas.merge.average` and `ties`, recipes in the files). The true
atlas is recorded, then recovered from the weights alone (node order shuffled) by
MoTHer and by jatlas (`jatlas.atlas.recover`).

Commands:
  python experiments/atlas_recovery.py --config configs/atlas_recovery.py --out runs/atlas_recovery
  python experiments/atlas_recovery.py --config configs/atlas_recovery.py:smoke --out runs/smoke
  the same recovery from the zoos on the command line (zoo members only):
  jatlas atlas recover runs/atlas_recovery/zoos/* --out recovered.json
Anchors (Atlas paper, in-the-wild Hugging Face components Qwen / Llama / SD): the
Atlas method 78.9 / 80.4 / 85.1% of edges right vs MoTHer 32.8 / 19.3 / 50.5%;
10k nodes in 19 s.
Expected (default, 520 nodes, 2-core CPU, about 1 min): directed edge accuracy jatlas 0.982
(finetune 0.973, adapter 1.000, quantized 1.000, merge 1.000), MoTHer 0.098; with creation
order (jatlas+times) 0.971; the L2-distance ablation lower (results.json "nearest_parent":
how often each distance alone puts the parent nearest among earlier models). Every seed changed
(0.977): add --config.recover.order_seed=3 --config.zoos.roots.zoo.seed=10
--config.zoos.fan.zoo.seed=11 --config.zoos.snake1.zoo.seed=12 --config.zoos.snake2.zoo.seed=13
--config.zoos.snake3.zoo.seed=14 --config.zoos.fan2.zoo.seed=15 --config.lowrank.seed=16
--config.quantized.seed=17 --config.merges.seed=18. The smoke
variant (~37 nodes, no second fan) takes ~1.5 min with its compiles.
"""
import ml_collections
import numpy as np

from jatlas.zoo.schema import default_config

HIDDEN = (32, 32)


def class_subsets(n: int, seed: int, sizes=(4, 5, 6, 7, 8)) -> tuple:
  """n random class subsets of the 10 digits (sorted tuples, sizes cycling `sizes`)."""
  rng = np.random.default_rng(seed)
  return tuple(tuple(sorted(int(c) for c in rng.choice(10, sizes[i % len(sizes)],
                                                      replace=False)))
               for i in range(n))


def zoo_config(name: str, members: int, seed: int, epochs: int,
               subsets: tuple | None = None) -> ml_collections.ConfigDict:
  """A zoo of digit MLPs: all 10 digits (roots) or `subsets` (fine-tunes, 10-way head)."""
  c = default_config()  # every field and its meaning: jatlas/zoo/schema.py
  c.name = f"atlas_recovery_{name}"
  c.model.name, c.model.kwargs = "mlp", {"hidden": HIDDEN}
  if subsets:
    c.tasks.kind, c.tasks.kwargs = "class_subsets", {"subsets": subsets, "relabel": False}
  c.zoo.members, c.zoo.seed = members, seed
  c.zoo.epochs, c.zoo.save_epochs = (epochs,), ()
  c.zoo.lr = (3e-3,) if not subsets else (1e-3,)
  c.zoo.checkpoint_every = 0  # zoos of seconds: resuming would cost more than it saves
  c.zoo.parent = ""  # fine-tunes: set by the experiment to DIR/zoos/<parent>
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, "", "smoke"):
    raise ValueError(f"unknown config variant {arg!r}; expected '' or 'smoke'")
  smoke = arg == "smoke"
  roots, fan, snake, fan2 = (4, 4, 2, 2) if smoke else (5, 40, 25, 4)
  c = ml_collections.ConfigDict()
  c.name = "atlas_recovery"
  # (zoo, its parent zoo: "" for the roots), in training order
  c.parents = (("roots", ""), ("fan", "roots"), ("snake1", "fan"), ("snake2", "snake1"),
               ("snake3", "snake2"), ("fan2", "snake1"))
  if smoke:  # one zoo fewer to compile: the snake (depth 3) is kept, the second fan not
    c.parents = c.parents[:-1]
  c.zoos = ml_collections.ConfigDict({
      "roots": zoo_config("roots", roots, 0, 10 if smoke else 20),
      "fan": zoo_config("fan", roots * fan, 1, 2, class_subsets(23, 1)),
      "snake1": zoo_config("snake1", snake, 2, 2, class_subsets(7, 2)),
      "snake2": zoo_config("snake2", snake, 3, 2, class_subsets(7, 3)),
      "snake3": zoo_config("snake3", snake, 4, 2, class_subsets(7, 4)),
      "fan2": zoo_config("fan2", snake * fan2, 5, 2, class_subsets(11, 5)),
  })
  c.lowrank = ml_collections.ConfigDict({
      "count": 4 if smoke else 60,     # children; parents drawn from the zoo models
      "rank": 2, "epochs": 3, "lr": 1e-2, "batch_size": 32, "seed": 6,
  })
  c.quantized = ml_collections.ConfigDict({"count": 4 if smoke else 50, "seed": 7})
  # merges of siblings (children of one fan parent): averages of 2 and 3, TIES of 2
  c.merges = ml_collections.ConfigDict({
      "average2": 1 if smoke else 12, "average3": 1 if smoke else 8, "ties": 1 if smoke else 10,
      "ties_density": 0.3, "seed": 8})
  c.recover = ml_collections.ConfigDict({
      "order_seed": 9,      # models reach the methods in this shuffled order
      "with_times": True,   # also jatlas with creation order (labelled "jatlas+times")
  })
  return c
