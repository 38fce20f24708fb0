"""Small CNN of the Small CNN Zoo (Unterthiner et al. 2020, arXiv 2002.11448).

Three 3x3 stride-2 convs with torch-style symmetric padding, global average
pooling, Dense head: 4,970 params for 1 input channel and 10 classes.

Usage:
  net = SmallCNN()
  variables = net.init(key, x_NHWC)  # x_NHWC: (N, 28, 28, 1)
  logits_NK = net.apply(variables, x_NHWC)
"""
import collections
from typing import Sequence

import flax.linen as nn

from jatlas.nets.activations import get_activation
from jatlas.nets.conv import Conv2D


class SmallCNN(nn.Module):
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

  @nn.compact
  def __call__(self, x_NHWC, *, train: bool = False, return_taps: bool = False):
    del train  # no BatchNorm or dropout
    act = get_activation(self.activation)
    k, s = self.kernel_size, self.stride
    taps = collections.OrderedDict()  # jit would re-sort a plain dict's keys
    h_NHWC = x_NHWC
    for i, c in enumerate(self.channels, start=1):
      conv = Conv2D(c, (k, k), strides=(s, s), padding=k // 2,
                    lowering=self.conv_lowering, kernel_init=self.kernel_init,
                    bias_init=self.bias_init, name=f"conv{i}")
      h_NHWC = act(conv(h_NHWC))
      taps[f"conv{i}"] = h_NHWC
    pooled_NC = h_NHWC.mean(axis=(1, 2))
    taps["pool"] = pooled_NC
    logits_NK = nn.Dense(self.num_classes, kernel_init=self.kernel_init,
                         bias_init=self.bias_init, name="head")(pooled_NC)
    taps["logits"] = logits_NK
    return (logits_NK, taps) if return_taps else logits_NK
