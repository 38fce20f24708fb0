"""Small CNN of the Small CNN Zoo (Unterthiner et al. 2020, arXiv 2002.11448).

Three 3x3 stride-2 convs with torch-style symmetric padding, global average
pooling, Dense head: 4,970 params for 1 input channel and 10 classes.

Usage:
  net = SmallCNN()
  variables = net.init(key, x_NHWC)  # x_NHWC: (N, 28, 28, 1)
  logits_NK = net.apply(variables, x_NHWC)
"""
import functools
from typing import Sequence

import flax.linen as nn

from jatlas.nets.conv import Conv2D
from jatlas.nets.stages import Act, Linear, Mean, Stage, StagedNet


class SmallCNN(StagedNet):
  """Convs `conv1..convC` + activation, global average pool, Dense `head`.

  Taps: `conv1`, ..., `convC`, `pool`, `logits`.
  """
  channels: Sequence[int] = (16, 16, 16)
  num_classes: int = 10
  activation: str = "relu"
  kernel_size: int = 3
  stride: int = 2
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  def stages(self):
    k, s = self.kernel_size, self.stride
    act = Act(self.activation)
    convs = tuple(
        Stage(f"conv{i}", (Linear(f"conv{i}", functools.partial(
            Conv2D, c, (k, k), strides=(s, s), padding=k // 2, lowering=self.conv_lowering,
            kernel_init=self.kernel_init, bias_init=self.bias_init)), act))
        for i, c in enumerate(self.channels, start=1))
    head = functools.partial(nn.Dense, self.num_classes, kernel_init=self.kernel_init,
                             bias_init=self.bias_init)
    return (*convs, Stage("pool", (Mean(),)), Stage("logits", (Linear("head", head),)))
