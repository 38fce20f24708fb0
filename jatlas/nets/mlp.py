"""Multi-layer perceptron on flattened inputs.

Usage:
  net = MLP(hidden=(32,), num_classes=10)
  variables = net.init(key, x_NHWC)
  logits_NK, taps = net.apply(variables, x_NHWC, return_taps=True)
"""
import functools
from typing import Sequence

import flax.linen as nn

from jatlas.nets.stages import Act, Flatten, Linear, Stage, StagedNet


class MLP(StagedNet):
  """Flatten, then Dense+activation per hidden width, then a Dense head.

  Params: `fc1`, `fc2`, ..., `head`. Taps: `fc1`, `fc2`, ..., `logits`.
  """
  hidden: Sequence[int] = (32,)
  num_classes: int = 10
  activation: str = "relu"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  def _dense(self, name, features):
    return Linear(name, functools.partial(nn.Dense, features, kernel_init=self.kernel_init,
                                          bias_init=self.bias_init))

  def stages(self):
    act = Act(self.activation)
    stages = [Stage(f"fc{i}", (self._dense(f"fc{i}", width), act))
              for i, width in enumerate(self.hidden, start=1)]
    stages.append(Stage("logits", (self._dense("head", self.num_classes),)))
    first = stages[0]
    stages[0] = Stage(first.name, (Flatten(), *first.ops))
    return tuple(stages)
