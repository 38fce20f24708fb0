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
import collections
from typing import Sequence

import flax.linen as nn

from jatlas.nets.activations import get_activation
from jatlas.nets.conv import Conv2D, avg_pool

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


class LeNet5(nn.Module):
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

  def _conv(self, features, padding, name):
    return Conv2D(features, (KERNEL, KERNEL), padding=padding,
                  lowering=self.conv_lowering, kernel_init=self.kernel_init,
                  bias_init=self.bias_init, name=name)

  def _dense(self, features, name):
    return nn.Dense(features, kernel_init=self.kernel_init,
                    bias_init=self.bias_init, name=name)

  @nn.compact
  def __call__(self, x_NHWC, *, train: bool = False, return_taps: bool = False):
    del train  # no BatchNorm or dropout
    _check_spatial(x_NHWC.shape)
    act = get_activation(self.activation)
    c1, c2, c3 = self.channels
    taps = collections.OrderedDict()  # jit would re-sort a plain dict's keys
    taps["conv1"] = h = act(self._conv(c1, KERNEL // 2, "conv1")(x_NHWC))
    taps["pool1"] = h = avg_pool(h, 2)
    taps["conv2"] = h = act(self._conv(c2, 0, "conv2")(h))
    taps["pool2"] = h = avg_pool(h, 2)
    taps["conv3"] = h = act(self._conv(c3, 0, "conv3")(h))
    h_ND = h.reshape(h.shape[0], -1)  # (H, W, C) order; torch's is (C, H, W)
    taps["fc1"] = h_ND = act(self._dense(self.hidden, "fc1")(h_ND))
    taps["logits"] = logits_NK = self._dense(self.num_classes, "head")(h_ND)
    return (logits_NK, taps) if return_taps else logits_NK
