"""Fixtures of the io tests: one tiny trained zoo for the whole session."""
import ml_collections
import pytest

from jatlas.zoo import train_zoo
from jatlas.zoo.schema import default_config


def tiny_zoo_config() -> ml_collections.ConfigDict:
  """2 MLP members on 8x8 digits, 1 epoch: a real zoo in a few seconds."""
  c = default_config()
  c.name = "io-tiny"
  c.data.kwargs = {"size": 8}
  c.tasks.kind = "class_pairs"
  c.tasks.kwargs = {"pairs": ((0, 1), (2, 3))}
  c.model.kwargs = {"hidden": (16,)}
  c.zoo.update({"members": 2, "lr": (1e-2,), "epochs": (1,), "save_epochs": (0, 1)})
  return c


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
  """A trained zoo (2 members x 2 saved epochs = 4 rows); treat as read-only."""
  return train_zoo(tiny_zoo_config(), str(tmp_path_factory.mktemp("io") / "zoo"),
                   progress=False)
