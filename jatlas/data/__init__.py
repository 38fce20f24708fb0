"""Dataset sources, readers for user data, and task builders, all in NumPy.

Usage:
  from jatlas import data
  ds = data.load_digits()                  # Dataset, x_* float32 NHWC
  tasks = data.one_vs_rest(ds)             # TaskSet, labels[split] int32 [T, N]
"""
from jatlas.data.cifar10 import load_cifar10
from jatlas.data.dataset import SPLITS, Dataset, split_off
from jatlas.data.digits import load_digits
from jatlas.data.idx import read_idx
from jatlas.data.image_folder import load_image_folder
from jatlas.data.label_noise import with_label_noise
from jatlas.data.mnist1d import load_mnist1d
from jatlas.data.mnist_idx import load_mnist_idx
from jatlas.data.npz import load_npz
from jatlas.data.registry import LOADERS, load
from jatlas.data.tasks import (TaskSet, class_pairs, class_subsets, concat_tasks, multiclass,
                               one_vs_rest)

__all__ = [
    "SPLITS", "Dataset", "split_off", "load", "LOADERS",
    "load_digits", "load_mnist1d", "load_image_folder", "load_cifar10", "load_mnist_idx",
    "load_npz", "read_idx",
    "TaskSet", "multiclass", "one_vs_rest", "class_subsets", "class_pairs",
    "with_label_noise", "concat_tasks",
]
