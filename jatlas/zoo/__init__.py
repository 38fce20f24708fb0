"""Model zoos and the population engine that trains them (and every other population).

Usage:
  from jatlas.zoo import Zoo, train_zoo
  zoo = train_zoo(cfg, "runs/digits")        # or: jatlas zoo train --config ... --out ...
  zoo = Zoo.open("runs/digits"); zoo.table; zoo.params(0); zoo.stacked("params/fc1/kernel")

  from jatlas.zoo import Engine, Population, train_data   # any population of pytrees
"""
from jatlas.zoo.classifier import classification_metrics, classifier
from jatlas.zoo.engine import Engine, Population
from jatlas.zoo.lock import ZooInUseError
from jatlas.zoo.parents import ParentMismatchError
from jatlas.zoo.population import OPTIMIZERS, PopulationSpec, population_spec
from jatlas.zoo.schema import ConfigError, default_config, validate
from jatlas.zoo.step import Member, MemberState, TrainData, labels_data, train_data
from jatlas.zoo.store import Zoo, ZooFormatError
from jatlas.zoo.train import ResumeMismatchError, plan, train_zoo

__all__ = [
    "Engine", "Population", "Member", "MemberState", "TrainData", "train_data", "labels_data",
    "classifier", "classification_metrics", "OPTIMIZERS", "PopulationSpec", "population_spec",
    "ConfigError", "default_config", "validate", "Zoo", "ZooFormatError", "ZooInUseError",
    "ParentMismatchError", "ResumeMismatchError", "plan", "train_zoo",
]
