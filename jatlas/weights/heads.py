"""Small Flax building blocks the encoders share.

Usage:
  head = MLP(hidden=(256, 256), n_out=10)          # hidden=() is a linear head
  w = self.param("U", torch_uniform(fan_in=128), (768, 128))
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
  """PyTorch's Linear default init, U(+-1/sqrt(fan_in)), with fan_in given explicitly
  (ProbeX's probes U count r_U as fan-in although they are stored d_W x r_U)."""
  bound = 1.0 / max(fan_in, 1) ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_dense(features: int, fan_in: int, use_bias: bool = True, name: str | None = None):
  """nn.Dense initialised like torch.nn.Linear (kernel and bias U(+-1/sqrt(fan_in)))."""
  init = torch_uniform(fan_in)
  return nn.Dense(features, use_bias=use_bias, kernel_init=init, bias_init=init, name=name)


class MLP(nn.Module):
  """x [B, d] -> [B, n_out]: Dense + ReLU per hidden width, then a linear output.
  The output layer starts at zero: a random linear readout of many standardised
  features starts far from the minimum-norm solution, and Adam's sign-like
  steps never pull the weights of pure-noise features back (the planted tests
  generalised at 0.67 from a random init vs 0.9+ from zero)."""
  hidden: Sequence[int] = ()
  n_out: int = 1

  @nn.compact
  def __call__(self, x_BD):
    for h in self.hidden:
      x_BD = nn.relu(nn.Dense(h)(x_BD))
    return nn.Dense(self.n_out, kernel_init=nn.initializers.zeros_init())(x_BD)
