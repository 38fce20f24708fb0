"""1-D CNN of the MNIST-1D notebooks (Greydanus & Kobak, arXiv 2011.14439).

Three strided 1-D convs + ReLU, flatten, Dense head; 5,210 params on
length-40 signals. 1-D convs run as Conv2D with (1, k) kernels on (N, 1, L, C).

Usage:
  net = CNN1D()
  variables = net.init(key, x_N1LC)  # x_N1LC: (N, 1, 40, 1)
  logits_NK = net.apply(variables, x_N1LC)
"""
import functools
from typing import Sequence

import flax.linen as nn

from jatlas.nets.conv import Conv2D
from jatlas.nets.stages import Act, Flatten, Linear, Stage, StagedNet


class CNN1D(StagedNet):
  """Params: `conv1..conv3`, `head`. Taps: `conv1`, ..., `convC`, `logits`.

  `paddings` defaults to k//2 per conv; pass e.g. (1, 1, 1) for other variants.
  """
  channels: Sequence[int] = (25, 25, 25)
  kernels: Sequence[int] = (5, 3, 3)
  stride: int = 2
  num_classes: int = 10
  activation: str = "relu"
  paddings: Sequence[int] | None = None
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  def check_input(self, x_N1LC) -> None:
    if x_N1LC.ndim != 4 or x_N1LC.shape[1] != 1:
      raise ValueError(f"CNN1D expects signals shaped (N, 1, L, C), got "
                       f"{tuple(x_N1LC.shape)}")

  def stages(self):
    paddings = self.paddings or [k // 2 for k in self.kernels]
    if not len(self.channels) == len(self.kernels) == len(paddings):
      raise ValueError(
          f"CNN1D needs one kernel size and padding per conv, got channels="
          f"{tuple(self.channels)}, kernels={tuple(self.kernels)}, "
          f"paddings={tuple(paddings)}")
    act = Act(self.activation)
    convs = tuple(
        Stage(f"conv{i}", (Linear(f"conv{i}", functools.partial(
            Conv2D, c, (1, k), strides=(1, self.stride), padding=(0, p),
            lowering=self.conv_lowering, kernel_init=self.kernel_init,
            bias_init=self.bias_init)), act))
        for i, (c, k, p) in enumerate(zip(self.channels, self.kernels, paddings), start=1))
    head = functools.partial(nn.Dense, self.num_classes, kernel_init=self.kernel_init,
                             bias_init=self.bias_init)
    # (L, C) flatten order, unlike torch's (C, L)
    return (*convs, Stage("logits", (Flatten(), Linear("head", head))))
