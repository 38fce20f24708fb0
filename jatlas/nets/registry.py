"""Build a net by name, for configs and the zoo trainer.

Usage:
  net = build("resnet", arch="R1121", num_classes=10)
  net = build("lenet5", num_classes=1)
"""
import flax.linen as nn

from jatlas.nets.cnn1d import CNN1D
from jatlas.nets.lenet5 import LeNet5
from jatlas.nets.mlp import MLP
from jatlas.nets.resnet import ResNet, stage_blocks_from_name
from jatlas.nets.small_cnn import SmallCNN


def _resnet(arch: str | None = None, **kwargs) -> ResNet:
  if arch is not None:
    if "stage_blocks" in kwargs:
      raise ValueError(f"pass arch={arch!r} or stage_blocks, not both")
    kwargs["stage_blocks"] = stage_blocks_from_name(arch)
  return ResNet(**kwargs)


NETS = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "lenet5": LeNet5,
    "resnet": _resnet,
    "cnn1d": CNN1D,
}


def build(name: str, **kwargs) -> nn.Module:
  """Returns the net `name` built with `kwargs` (its dataclass fields)."""
  if name not in NETS:
    raise ValueError(f"unknown net {name!r}; known: {sorted(NETS)}")
  return NETS[name](**kwargs)
