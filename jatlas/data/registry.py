"""Datasets by name, for configs and the command line.

Usage:
  ds = load("digits", size=16)
  ds = load("cifar10", root="cifar-10-batches-py")
"""
from typing import Callable

from jatlas.data.cifar10 import load_cifar10
from jatlas.data.dataset import Dataset
from jatlas.data.digits import load_digits
from jatlas.data.image_folder import load_image_folder
from jatlas.data.mnist1d import load_mnist1d
from jatlas.data.mnist_idx import load_mnist_idx
from jatlas.data.npz import load_npz

LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "image_folder": load_image_folder,
    "cifar10": load_cifar10,
    "mnist_idx": load_mnist_idx,
    "npz": load_npz,
}


def load(name: str, **kwargs) -> Dataset:
  """Calls the loader registered as `name`; unknown names raise ValueError listing all."""
  try:
    loader = LOADERS[name]
  except KeyError:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}") from None
  return loader(**kwargs)
