"""Input-space probing (ProbeGen-style): learned probe inputs through the whole network.

Each model runs on P learned inputs; its outputs [P, K] feed a small MLP head. The
probes and the head train together (gradients flow through the frozen models).
It reads the function a model computes, not its weights, so it is a method apart
from the weight encoders: report it separately (results.json
"task_id_input_probing"). `W` must hold every variable of the net, by flat name.

Usage:
  enc = make_encoder("input_probing", net_name="lenet5", net_kwargs={"num_classes": 2},
                     input_shape=(32, 32, 1))        # or net=<a flax module> (not saved)
  enc.fit(tensors_R, task_R); enc.score(tensors_T, task_T)
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np

from jatlas import nets
from jatlas.flat_names import unflatten_variables
from jatlas.weights.encoder import Encoder, register
from jatlas.weights.heads import MLP


class InputProbing(nn.Module):
  """Variables of B models (leading axis) -> [B, n_out]."""
  net: Any
  input_shape: Sequence[int]
  n_out: int
  n_probes: int = 16
  hidden: Sequence[int] = (64,)

  @nn.compact
  def __call__(self, variables_B):
    probes_P = self.param("probes", nn.initializers.normal(1.0),
                          (self.n_probes, *self.input_shape))
    out_BPK = jax.vmap(lambda v: self.net.apply(v, probes_P))(variables_B)
    return MLP(tuple(self.hidden), self.n_out)(out_BPK.reshape(out_BPK.shape[0], -1))


@register
class InputProbingEncoder(Encoder):
  name = "input_probing"
  defaults = {"net": None, "net_name": None, "net_kwargs": {}, "input_shape": None,
              "n_probes": 16, "hidden": (64,)}

  def _net(self):
    c = self.config
    return c["net"] if c["net"] is not None else nets.build(c["net_name"], **c["net_kwargs"])

  def features(self, tensors, fitting):
    if (self.config["net"] is None and self.config["net_name"] is None) or \
        self.config["input_shape"] is None:
      raise ValueError("input_probing needs net_name= (+ net_kwargs=) or net=, and "
                       "input_shape= (the shape of one input)")
    names = sorted(tensors)
    if fitting:
      self.names_ = names
    elif names != self.names_:
      raise ValueError(f"input_probing: W holds {names}, the encoder was fitted on "
                       f"{self.names_}")
    return unflatten_variables({k: np.asarray(v, np.float32) for k, v in tensors.items()})

  def build(self, n_out):
    c = self.config
    return InputProbing(self._net(), tuple(c["input_shape"]), n_out, c["n_probes"],
                        tuple(c["hidden"]))

  def save(self, path):
    if self.config["net"] is not None:
      raise ValueError("input_probing built with net=<module> cannot be saved: build it with "
                       "net_name= and net_kwargs= (jatlas.nets.build) instead")
    self.meta_ = {"names": self.names_}
    super().save(path)

  def restore(self):
    self.names_ = list(self.meta_["names"])
