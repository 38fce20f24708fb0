"""Small CIFAR-style ResNets R_abcd (Hernandez et al. 2023, arXiv 2303.11277).

Stem conv3x3+BN+ReLU, stages of BasicBlocks (stage i>0 halves the resolution
in its first block), global average pool, Dense head. R1111 is the ResNet-10
shape, R2222 the ResNet-18 shape. BatchNorm uses torch's defaults.

Usage:
  net = resnet_from_name("R1121", num_classes=10)
  variables = net.init(key, x_NHWC)  # {"params": ..., "batch_stats": ...}
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
  logits_NK, updates = net.apply(variables, x_NHWC, train=True,
                                 mutable=["batch_stats"])
"""
import functools
import re
from typing import Sequence

import flax.linen as nn

from jatlas.nets.conv import Conv2D
from jatlas.nets.stages import Act, Linear, Mean, Norm, Residual, Stage, StagedNet

ALIASES = {"resnet10": "R1111", "resnet18": "R2222"}


def _conv(name, features, kernel, stride, lowering, kernel_init) -> Linear:
  return Linear(name, functools.partial(
      Conv2D, features, (kernel, kernel), strides=(stride, stride), padding=kernel // 2,
      use_bias=False, lowering=lowering, kernel_init=kernel_init))


def basic_block(name: str, in_features: int, features: int, stride: int = 1,
                lowering: str = "auto",
                kernel_init=nn.initializers.lecun_normal()) -> Residual:
  """The BasicBlock as ops; a projection shortcut where stride or width changes."""
  conv = functools.partial(_conv, lowering=lowering, kernel_init=kernel_init)
  branch = (conv("conv1", features, 3, stride), Norm("bn1"), Act("relu"),
            conv("conv2", features, 3, 1), Norm("bn2"))
  shortcut = ()
  if stride != 1 or in_features != features:
    shortcut = (conv("proj_conv", features, 1, stride), Norm("proj_bn"))
  return Residual(name, branch, shortcut, (Act("relu"),))


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU.

  The shortcut is a 1x1 conv+BN projection when stride or width changes.
  """
  features: int
  stride: int = 1
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x_NHWC, train: bool = False):
    block = basic_block(self.name, x_NHWC.shape[-1], self.features, self.stride,
                        self.conv_lowering, self.kernel_init)
    return block.body(x_NHWC, train)


class ResNet(StagedNet):
  """Params: `stem_conv`, `stem_bn`, `block1..blockB` (global order), `head`.

  Taps: `stem`, `block1`, ..., `blockB`, `pool`, `logits`; tap index k in the
  stitching paper's numbering is the k-th entry (0 = stem).
  """
  stage_blocks: Sequence[int] = (1, 1, 1, 1)
  widths: Sequence[int] = (16, 32, 64, 128)
  num_classes: int = 10
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  def stages(self):
    blocks_ok = self.stage_blocks and min(self.stage_blocks) >= 1
    if len(self.stage_blocks) != len(self.widths) or not blocks_ok:
      raise ValueError(
          f"ResNet needs one width per stage and >= 1 block per stage, got "
          f"stage_blocks={tuple(self.stage_blocks)}, "
          f"widths={tuple(self.widths)}")
    stem = (_conv("stem_conv", self.widths[0], 3, 1, self.conv_lowering, self.kernel_init),
            Norm("stem_bn"), Act("relu"))
    stages = [Stage("stem", stem)]
    in_width = self.widths[0]
    for stage, (blocks, width) in enumerate(zip(self.stage_blocks, self.widths)):
      for b in range(blocks):
        name = f"block{len(stages)}"
        stride = 2 if stage > 0 and b == 0 else 1
        block = basic_block(name, in_width, width, stride, self.conv_lowering,
                            self.kernel_init)
        stages.append(Stage(name, (block,)))
        in_width = width
    head = functools.partial(nn.Dense, self.num_classes, kernel_init=self.kernel_init)
    stages += [Stage("pool", (Mean(),)), Stage("logits", (Linear("head", head),))]
    return tuple(stages)


def stage_blocks_from_name(arch: str) -> tuple[int, ...]:
  """Blocks per stage: "R1121" -> (1, 1, 2, 1); also "resnet10", "resnet18"."""
  arch = ALIASES.get(arch.lower(), arch)
  match = re.fullmatch(r"[Rr]_?([1-9]+)", arch)
  if match is None:
    raise ValueError(
        f"ResNet arch {arch!r} is not 'R' followed by blocks per stage "
        f"(e.g. 'R1121') nor one of {sorted(ALIASES)}")
  return tuple(int(d) for d in match.group(1))


def resnet_from_name(arch: str, **kwargs) -> ResNet:
  """ResNet with stage_blocks from `arch`, e.g. resnet_from_name("R2222")."""
  return ResNet(stage_blocks=stage_blocks_from_name(arch), **kwargs)

