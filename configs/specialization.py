"""Compatible specialization on digits (Pari et al. 2024, arXiv 2411.02207) with jatlas's zoo.

One base ResNet learns all 10 digits briefly; two specialists are fine-tuned from it
on disjoint halves of the classes (0-4 and 5-9), keeping the base's 10-way head, and
saved along the way. At each saved length of specialization: per-layer CKA between
the two specialists (biased, debiased, and calibrated: permutation null + bootstrap),
and how well they merge on the target task that needs both skills (all 10 digits):
each specialist alone, weight averaging (BatchNorm statistics recomputed), TIES,
feature averaging over an alpha grid, learned routing over 1 and several depths.

Commands:
  python experiments/specialization.py --config configs/specialization.py --out runs/specialization
  python experiments/specialization.py --config configs/specialization.py:smoke --out runs/smoke
Anchor (Pari et al., GPT-2 small, math + code specialists, GSM-Hard loss): best feature
average 1.625 after 1k steps vs 1.719 after 8k; routing 1.328 vs 1.344; routing over
more depths improves it (1.313 -> 1.203 -> 1.172 -> 1.164 for 1..4 depths).
Expected: see the README's specialization table (the command above, 2-core CPU).
"""
import ml_collections

from jatlas.zoo.schema import default_config

HALVES = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))


def net_config(c, smoke: bool) -> None:
  # one stage of 2 blocks (smoke) or two of 3: blocks of one stage share shapes, so
  # routing over several depths has candidates (a block that changes resolution has none)
  c.model.name = "resnet"
  c.model.kwargs = {"stage_blocks": (2,) if smoke else (3, 3),
                    "widths": (8,) if smoke else (16, 32)}


def base_config(smoke: bool) -> ml_collections.ConfigDict:
  c = default_config()  # every field and its meaning: jatlas/zoo/schema.py
  c.name = "specialization_base"
  net_config(c, smoke)
  c.zoo.members, c.zoo.seed = 1, 0
  c.zoo.epochs, c.zoo.save_epochs = (2,) if smoke else (1,), ()
  c.zoo.batch_size, c.zoo.lr = 32, (3e-3,) if smoke else (1e-3,)  # smoke: a narrow net
  c.zoo.checkpoint_every = 0
  return c


def specialists_config(smoke: bool) -> ml_collections.ConfigDict:
  c = default_config()
  c.name = "specialization_specialists"
  net_config(c, smoke)
  c.tasks.kind = "class_subsets"
  c.tasks.kwargs = {"subsets": HALVES, "relabel": False}  # keep the base's 10-way head
  c.zoo.members, c.zoo.seed = 2, 1  # member 0 learns 0-4, member 1 learns 5-9
  c.zoo.epochs = (4,) if smoke else (32,)
  c.zoo.save_epochs = (0, 4) if smoke else (0, 1, 2, 4, 8, 16, 32)
  c.zoo.batch_size, c.zoo.lr = 32, (3e-3,) if smoke else (1e-3,)
  c.zoo.checkpoint_every = 0
  c.zoo.parent = ""  # set by the experiment: DIR/zoos/base
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, "", "smoke"):
    raise ValueError(f"unknown config variant {arg!r}; expected '' or 'smoke'")
  smoke = arg == "smoke"
  c = ml_collections.ConfigDict()
  c.name = "specialization"
  c.base = base_config(smoke)
  c.specialists = specialists_config(smoke)
  c.experiment = ml_collections.ConfigDict({
      "seed": 0,
      # draws: of the permutation null and of the bootstrap
      "cka": {"reduce": "mean", "draws": 20 if smoke else 500},
      "alphas": 11,                        # feature-averaging grid 0, 0.1, ..., 1 (weight on 0-4)
      "ties": {"density": 0.2, "lam": 1.0},
      "routing": {"depths": (1, 2) if smoke else (1, 2, 3), "epochs": 2 if smoke else 20,
                  "lr": 5e-3, "seeds": (0,) if smoke else (0, 1)},
  })
  return c
