"""A tiny zoo config file for the zoo tests (also usable with `jatlas zoo train`).

  jatlas zoo train --config tests/zoo/tiny_config.py --out /tmp/tiny
  jatlas zoo train --config tests/zoo/tiny_config.py:cnn --out /tmp/tiny_cnn  # a conv net
"""
import ml_collections

from jatlas.zoo.schema import default_config


def make_tiny_config(cnn: bool = False, **zoo_overrides) -> ml_collections.ConfigDict:
  c = default_config()
  c.name = "tiny"
  c.data.kwargs = {"size": 8}
  c.tasks.kind = "class_pairs"
  c.tasks.kwargs = {"pairs": ((0, 1), (2, 3), (4, 5))}
  c.model.kwargs = {"hidden": (16,)}
  if cnn:  # trained by the CPU member loop, not the vmapped step
    c.model.name, c.model.kwargs = "small_cnn", {"channels": (4, 4)}
  c.zoo.update({"members": 6, "lr": (1e-2,), "epochs": (2,), "batch_size": 16,
                "save_epochs": (0, 1, 2)})
  c.zoo.update(zoo_overrides)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return make_tiny_config(cnn=arg == "cnn")
