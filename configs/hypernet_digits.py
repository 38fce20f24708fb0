"""One-vs-rest LeNet-5 zoo on sklearn digits: the hypernetwork-dataset recipe
(Kurtenbach & Shamir 2025: tanh LeNet-5, 32x32 inputs, Adam 1e-3, batch 128,
one binary detector per class) scaled to the embedded default data, and every
encoder of jatlas.weights reading the task from the weights.

Commands:
  python experiments/hypernet_digits.py --config configs/hypernet_digits.py --out runs/hypernet_digits
  python experiments/hypernet_digits.py --config configs/hypernet_digits.py:full --out runs/full
  python experiments/hypernet_digits.py --config configs/hypernet_digits.py:smoke --out runs/smoke
  jatlas zoo train --config configs/hypernet_digits.py:paper --out runs/paper  # 10^4 members
  jatlas zoo train --config configs/hypernet_digits.py --out runs/zoo      # the zoo alone
Default: 500 members (50 per digit; the main job, under 10 minutes on 2 CPU cores);
full: 1,000 (100 per digit); paper: 10,000 (1,000 per digit) trained 20 epochs, the
paper's scale, in waves (hours on 2 cores; rerun the command to resume).
Expected (README main-job table; 8 min 11 s on a 2-core AVX-512 EPYC, 10 min 30 s on AVX2):
task ID from weights 98.7% with the equivariant encoder (98.0% from 20 models per digit;
:full 99.0% and 96.7%), 54.7% StatNN, dense / mlp_flat / ProbeX / canonical+dense near
chance (10%); linearised and input-probing references 100%; hypernetwork detectors 0.935
test balanced accuracy vs 0.923 for the zoo's trained members.
:paper (README; AVX-512 EPYC): zoo 2 h 8 min at 4.82 GB peak, whole command 2 h 28 min at
23.3 GB; mean test balanced accuracy 0.954; task ID 100.0% equivariant, 88.5% StatNN.
"""
import ml_collections

from jatlas.zoo.schema import default_config

SMALL_PROBEX = {"n_probes": 32, "proj_dim": 32, "rep_dim": 64, "epochs": 40, "eval_every": 10,
                "patience": 2}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default_config()  # every field and its meaning: jatlas/zoo/schema.py
  c.name = "hypernet_digits"
  c.data.kwargs = {"size": 32}
  c.tasks.kind = "one_vs_rest"
  c.model.name, c.model.kwargs = "lenet5", {"activation": "tanh"}
  c.zoo.members = 500        # 10 tasks x 50 seeds: enough models for the encoders to learn
  c.zoo.epochs = (5,)        # the paper: 20
  c.zoo.batch_size = 128
  c.zoo.save_epochs = (0, 1, 5)
  c.experiment = ml_collections.ConfigDict({
      "test_fraction": 0.3, "val_per_task": 5, "seed": 0,
      # learned weights-only encoders of the task-ID table ("probex": a layer sweep)
      "task_id_encoders": ("statnn", "dense", "mlp_flat", "probex", "canonical", "equivariant"),
      "curve_sizes": (3, 10, 20, 30),   # models per task (30: the whole train pool)
      "curve_encoders": ("statnn", "equivariant"),  # + the linearised reference, always
      "accuracy_encoders": ("statnn",),
      "encoders": {
          "statnn": {"epochs": 300, "eval_every": 10, "patience": 10},
          "dense": {"layer": "params/conv1/kernel", "epochs": 300, "eval_every": 10,
                    "patience": 10},
          "mlp_flat": {"hidden": (32,), "epochs": 100, "eval_every": 10, "patience": 3},
          "probex": SMALL_PROBEX,
          "canonical": {"base": "dense", "base_kw": {"layer": "params/conv1/kernel"},
                        "epochs": 300, "eval_every": 10, "patience": 10},
          # the module's defaults; two seeds cost one on two cores (a member per core)
          "equivariant": {"epochs": 30, "eval_every": 3, "patience": 3, "seeds": (0, 1)},
          "input_probing": {"n_probes": 8, "hidden": (64,), "lr": 3e-3, "epochs": 30,
                            "eval_every": 5, "patience": 3},
      },
  })
  # a hypernetwork distilled from the zoo; conditioned on each digit's mean image, so
  # the held-out digit (never in its loss) still gets a detector
  c.hypernet = ml_collections.ConfigDict({
      "cond": "prototype", "held_out": (7,), "teachers_per_task": 10, "seeds": (0, 1),
      "steps": 200, "batch_size": 64, "lr": 1e-3, "code": 32, "hidden": 64,
      "bias_scale": 0.05, "label_weight": 0.0, "random_per_task": 4})
  if arg == "full":  # 100 models per digit: 650 train the encoders, 300 test them
    c.zoo.members = 1000
    c.experiment.curve_sizes = (3, 10, 20, 50, 65)
  elif arg == "paper":  # the hypernetwork dataset's scale: 1,000 models per digit, 20 epochs
    c.zoo.members = 10_000
    c.zoo.epochs = (20,)
    c.zoo.save_epochs = (0, 1, 5, 20)
    c.zoo.checkpoint_every = 5  # resume points; each one holds the whole wave's Adam state
    c.zoo.eval_train_examples = 360  # train_* metrics on a quarter of the train split
    c.experiment.curve_sizes = (3, 10, 30, 100, 695)  # 695: the whole train pool
  elif arg == "smoke":  # 3 models per digit: 20 train the encoders, 10 test them
    c.zoo.members = 30
    c.zoo.epochs = (1,)
    c.zoo.save_epochs = (0, 1)
    c.experiment.test_fraction = 1 / 3
    c.experiment.val_per_task = 1
    c.experiment.curve_sizes = (1,)
    c.experiment.curve_encoders = ("statnn",)
    for kw in c.experiment.encoders.values():
      kw["epochs"] = 10
    c.hypernet.update(steps=20, seeds=(0,), teachers_per_task=3, random_per_task=1)
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; expected '', 'full', 'paper' or 'smoke'")
  return c
