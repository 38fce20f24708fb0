"""Multi-layer perceptron on flattened inputs.

Usage:
  net = MLP(hidden=(32,), num_classes=10)
  variables = net.init(key, x_NHWC)
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
"""
import collections
from typing import Sequence

import flax.linen as nn

from jatlas.nets.activations import get_activation


class MLP(nn.Module):
  """Flatten, then Dense+activation per hidden width, then a Dense head.

  Params: `fc1`, `fc2`, ..., `head`. Taps: `fc1`, `fc2`, ..., `logits`.
  """
  hidden: Sequence[int] = (32,)
  num_classes: int = 10
  activation: str = "relu"
  conv_lowering: str = "auto"  # unused (no convs); kept so every net takes it
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x_NHWC, *, train: bool = False, return_taps: bool = False):
    del train  # no BatchNorm or dropout
    act = get_activation(self.activation)
    # OrderedDict: jit/vmap would return a plain dict with its keys re-sorted.
    taps = collections.OrderedDict()
    h_ND = x_NHWC.reshape(x_NHWC.shape[0], -1)
    for i, width in enumerate(self.hidden, start=1):
      h_ND = act(nn.Dense(width, kernel_init=self.kernel_init,
                          bias_init=self.bias_init, name=f"fc{i}")(h_ND))
      taps[f"fc{i}"] = h_ND
    logits_NK = nn.Dense(self.num_classes, kernel_init=self.kernel_init,
                         bias_init=self.bias_init, name="head")(h_ND)
    taps["logits"] = logits_NK
    return (logits_NK, taps) if return_taps else logits_NK
