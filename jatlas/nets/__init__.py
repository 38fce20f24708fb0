"""Flax linen nets for zoo members, each exposing named taps (layer outputs).

Every net maps NHWC float32 inputs to logits:
  logits_NK = net.apply(variables, x_NHWC)
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
`taps` is an OrderedDict in forward order; `train=True` matters only for
BatchNorm (ResNet), whose statistics live in the `batch_stats` collection.

Usage:
  from jatlas import nets
  net = nets.build("lenet5", num_classes=2)
"""
from jatlas.nets.activations import ACTIVATIONS, get_activation
from jatlas.nets.cnn1d import CNN1D
from jatlas.nets.lenet5 import LeNet5
from jatlas.nets.mlp import MLP
from jatlas.nets.registry import NETS, build
from jatlas.nets.resnet import (BasicBlock, ResNet, resnet_from_name,
                                stage_blocks_from_name)
from jatlas.nets.small_cnn import SmallCNN

__all__ = [
    "ACTIVATIONS", "BasicBlock", "CNN1D", "LeNet5", "MLP", "NETS", "ResNet",
    "SmallCNN", "build", "get_activation", "resnet_from_name",
    "stage_blocks_from_name",
]
