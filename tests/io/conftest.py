"""Fixtures of the io tests: one tiny trained zoo for the whole session."""
import ml_collections
import pytest

from jatlas.zoo import train_zoo


def tiny_zoo_config() -> ml_collections.ConfigDict:
  """2 MLP members on 8x8 digits, 1 epoch: a real zoo in a few seconds."""
  c = ml_collections.ConfigDict()
  c.name = "io-tiny"
  c.data = {"name": "digits", "kwargs": {"size": 8}}
  c.tasks = {"kind": "class_pairs", "kwargs": {"pairs": ((0, 1), (2, 3))},
             "label_noise": (), "noise_seed": 0}
  c.model = {"name": "mlp", "kwargs": {"hidden": (16,)}}
  c.zoo = {"members": 2, "seed": 0, "lr": (1e-2,), "weight_decay": (0.0,),
           "optimizer": ("adam",), "init_scale": (1.0,), "epochs": (1,), "batch_size": 32,
           "save_epochs": (0, 1), "eval_every": 0, "checkpoint_every": 1,
           "steps_per_call": 0, "shared_order": False, "parent": "", "parent_epoch": -1,
           "relation": "finetune"}
  return c


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
  """A trained zoo (2 members x 2 saved epochs = 4 rows); treat as read-only."""
  return train_zoo(tiny_zoo_config(), str(tmp_path_factory.mktemp("io") / "zoo"),
                   progress=False)
