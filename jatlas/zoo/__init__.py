"""Model zoos: populations trained as one vmapped, sharded JAX program.

Usage:
  from jatlas.zoo import Zoo, train_zoo
  zoo = train_zoo(cfg, "runs/digits")        # or: jatlas zoo train --config ... --out ...
  zoo = Zoo.open("runs/digits"); zoo.table; zoo.params(0); zoo.stacked("params/fc1/kernel")
"""
from jatlas.zoo.population import OPTIMIZERS, PopulationSpec, population_spec
from jatlas.zoo.store import Zoo, ZooFormatError
from jatlas.zoo.train import Interrupted, train_zoo

__all__ = ["OPTIMIZERS", "PopulationSpec", "population_spec", "Zoo", "ZooFormatError",
           "Interrupted", "train_zoo"]
