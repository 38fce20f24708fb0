"""LeNet-5 of the hypernetwork dataset (Kurtenbach & Shamir, arXiv 2507.15869).

conv 6@5x5 'same' + act, avgpool 2, conv 16@5x5 valid + act, avgpool 2,
conv 120@5x5 valid + act, flatten (NHWC order), Dense 84 + act, Dense head.
On 32x32x3 inputs with num_classes=1 this is the paper's 91,481-param net.
Defaults init like Keras (glorot-uniform kernels, zero biases), as the recipe.

Usage:
  net = LeNet5(num_classes=2)
  variables = net.init(key, x_NHWC)  # x_NHWC: (N, 32, 32, 3)
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
"""
import functools
from typing import Sequence

import flax.linen as nn

from jatlas.nets.conv import Conv2D
from jatlas.nets.stages import Act, AvgPool, Flatten, Linear, Stage, StagedNet

KERNEL = 5


def _check_spatial(shape) -> None:
  """Raises if a valid 5x5 conv would see a map smaller than its kernel."""
  _, h, w, _ = shape
  for stage in ("conv2", "conv3"):
    h, w = h // 2, w // 2  # the avgpool before this conv
    if min(h, w) < KERNEL:
      raise ValueError(
          f"LeNet5 input of shape {tuple(shape)} (NHWC) is too small: {stage} "
          f"would get a {h}x{w} map, smaller than its {KERNEL}x{KERNEL} kernel "
          f"(needs H, W >= 28).")
    h, w = h - KERNEL + 1, w - KERNEL + 1


class LeNet5(StagedNet):
  """Params: `conv1..conv3`, `fc1`, `head`.

  Taps: `conv1`, `pool1`, `conv2`, `pool2`, `conv3`, `fc1`, `logits`.
  """
  num_classes: int = 2
  activation: str = "tanh"
  channels: Sequence[int] = (6, 16, 120)
  hidden: int = 84
  conv_lowering: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  def _conv(self, name, features, padding):
    return Linear(name, functools.partial(
        Conv2D, features, (KERNEL, KERNEL), padding=padding, lowering=self.conv_lowering,
        kernel_init=self.kernel_init, bias_init=self.bias_init))

  def _dense(self, name, features):
    return Linear(name, functools.partial(nn.Dense, features, kernel_init=self.kernel_init,
                                          bias_init=self.bias_init))

  def check_input(self, x_NHWC) -> None:
    _check_spatial(x_NHWC.shape)

  def stages(self):
    act = Act(self.activation)
    c1, c2, c3 = self.channels
    return (
        Stage("conv1", (self._conv("conv1", c1, KERNEL // 2), act)),
        Stage("pool1", (AvgPool(2),)),
        Stage("conv2", (self._conv("conv2", c2, 0), act)),
        Stage("pool2", (AvgPool(2),)),
        Stage("conv3", (self._conv("conv3", c3, 0), act)),
        # (H, W, C) flatten order; torch's is (C, H, W)
        Stage("fc1", (Flatten(), self._dense("fc1", self.hidden), act)),
        Stage("logits", (self._dense("head", self.num_classes),)),
    )
