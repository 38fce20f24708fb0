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
import collections
import re
from typing import Sequence

import flax.linen as nn

from jatlas.nets.conv import Conv2D

ALIASES = {"resnet10": "R1111", "resnet18": "R2222"}


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
  # torch BatchNorm2d defaults: momentum 0.1 (= flax 0.9), eps 1e-5.
  # Exact two-pass variance: E[x^2]-E[x]^2 loses digits on large activations.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, use_fast_variance=False, name=name)


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU.

  The shortcut is a 1x1 conv+BN projection when stride or width changes.
  """
  features: int
  stride: int = 1
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  def _conv(self, kernel, stride, name):
    return Conv2D(self.features, (kernel, kernel), strides=(stride, stride),
                  padding=kernel // 2, use_bias=False,
                  lowering=self.conv_lowering, kernel_init=self.kernel_init,
                  name=name)

  @nn.compact
  def __call__(self, x_NHWC, train: bool = False):
    h = self._conv(3, self.stride, "conv1")(x_NHWC)
    h = nn.relu(_batch_norm(train, "bn1")(h))
    h = _batch_norm(train, "bn2")(self._conv(3, 1, "conv2")(h))
    shortcut = x_NHWC
    if self.stride != 1 or x_NHWC.shape[-1] != self.features:
      shortcut = self._conv(1, self.stride, "proj_conv")(x_NHWC)
      shortcut = _batch_norm(train, "proj_bn")(shortcut)
    return nn.relu(h + shortcut)


class ResNet(nn.Module):
  """Params: `stem_conv`, `stem_bn`, `block1..blockB` (global order), `head`.

  Taps: `stem`, `block1`, ..., `blockB`, `pool`, `logits`; tap index k in the
  stitching paper's numbering is the k-th entry (0 = stem).
  """
  stage_blocks: Sequence[int] = (1, 1, 1, 1)
  widths: Sequence[int] = (16, 32, 64, 128)
  num_classes: int = 10
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x_NHWC, *, train: bool = False, return_taps: bool = False):
    blocks_ok = self.stage_blocks and min(self.stage_blocks) >= 1
    if len(self.stage_blocks) != len(self.widths) or not blocks_ok:
      raise ValueError(
          f"ResNet needs one width per stage and >= 1 block per stage, got "
          f"stage_blocks={tuple(self.stage_blocks)}, "
          f"widths={tuple(self.widths)}")
    taps = collections.OrderedDict()  # jit would re-sort a plain dict's keys
    h = Conv2D(self.widths[0], (3, 3), padding=1, use_bias=False,
               lowering=self.conv_lowering, kernel_init=self.kernel_init,
               name="stem_conv")(x_NHWC)
    taps["stem"] = h = nn.relu(_batch_norm(train, "stem_bn")(h))
    k = 0
    stages = zip(self.stage_blocks, self.widths)
    for stage, (blocks, width) in enumerate(stages):
      for b in range(blocks):
        k += 1
        stride = 2 if stage > 0 and b == 0 else 1
        block = BasicBlock(width, stride=stride,
                           conv_lowering=self.conv_lowering,
                           kernel_init=self.kernel_init, name=f"block{k}")
        taps[f"block{k}"] = h = block(h, train)
    taps["pool"] = pooled_NC = h.mean(axis=(1, 2))
    taps["logits"] = logits_NK = nn.Dense(
        self.num_classes, kernel_init=self.kernel_init, name="head")(pooled_NC)
    return (logits_NK, taps) if return_taps else logits_NK


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

