"""A tiny zoo config file for the zoo tests (also usable with `jatlas zoo train`).

  jatlas zoo train --config tests/zoo/tiny_config.py --out /tmp/tiny
  jatlas zoo train --config tests/zoo/tiny_config.py:cnn --out /tmp/tiny_cnn  # a conv net
"""
import ml_collections


def make_tiny_config(cnn: bool = False, **zoo_overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "tiny"
  c.data = ml_collections.ConfigDict({"name": "digits", "kwargs": {"size": 8}})
  c.tasks = ml_collections.ConfigDict(
      {"kind": "class_pairs", "kwargs": {"pairs": ((0, 1), (2, 3), (4, 5))}, "label_noise": (),
       "noise_seed": 0})
  c.model = ml_collections.ConfigDict({"name": "mlp", "kwargs": {"hidden": (16,)}})
  if cnn:  # trained by the CPU member loop, not the vmapped step
    c.model = ml_collections.ConfigDict({"name": "small_cnn", "kwargs": {"channels": (4, 4)}})
  c.zoo = ml_collections.ConfigDict({
      "members": 6, "seed": 0, "lr": (1e-2,), "weight_decay": (0.0,), "optimizer": ("adam",),
      "init_scale": (1.0,), "epochs": (2,), "batch_size": 16, "save_epochs": (0, 1, 2),
      "eval_every": 0, "checkpoint_every": 1, "steps_per_call": 0, "shared_order": False,
      "parent": "", "parent_epoch": -1, "relation": "finetune"})
  c.zoo.update(zoo_overrides)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return make_tiny_config(cnn=arg == "cnn")
