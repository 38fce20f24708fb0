"""Flax linen nets for zoo members, each exposing named taps (layer outputs).

Every net maps NHWC float32 inputs to logits and runs any slice of itself:
  logits_NK = net.apply(variables, x_NHWC)
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
  h = net.apply(variables, x_NHWC, stop="conv2")          # the output of tap conv2
  logits_NK = net.apply(variables, h, start="conv2")      # the rest of the net
  net.tap_names()                                         # the taps, in order
`taps` is an OrderedDict in forward order; `train=True` matters only for
BatchNorm (ResNet), whose statistics live in the `batch_stats` collection.
`permutation_spec`, `random_permutation` and `permute` describe and apply the
hidden-unit symmetries (permutations, sign flips, rescaling) of any of them.

Usage:
  from jatlas import nets
  net = nets.build("lenet5", num_classes=2)
  spec = nets.permutation_spec(net, variables)
  variables = nets.permute(variables, spec, nets.random_permutation(spec, key))
"""
from jatlas.nets.activations import ACTIVATIONS, get_activation
from jatlas.nets.cnn1d import CNN1D
from jatlas.nets.lenet5 import LeNet5
from jatlas.nets.mlp import MLP
from jatlas.nets.registry import NETS, build
from jatlas.nets.resnet import (BasicBlock, ResNet, resnet_from_name,
                                stage_blocks_from_name)
from jatlas.nets.small_cnn import SmallCNN
from jatlas.nets.stages import Stage, StagedNet
from jatlas.nets.symmetry import (Axis, Group, GroupPerm, PermutationSpec,
                                  permutation_spec, permute, random_permutation)

__all__ = [
    "ACTIVATIONS", "Axis", "BasicBlock", "CNN1D", "Group", "GroupPerm", "LeNet5", "MLP",
    "NETS", "PermutationSpec", "ResNet", "SmallCNN", "Stage", "StagedNet", "build",
    "get_activation", "permutation_spec", "permute", "random_permutation",
    "resnet_from_name", "stage_blocks_from_name",
]
