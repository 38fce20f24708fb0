"""Activation functions by name, with PyTorch semantics.

Usage:
  act = get_activation("gelu")  # exact erf GELU, like torch.nn.GELU()
"""
from typing import Callable

import flax.linen as nn
import jax

# "gelu" is the exact form: flax's nn.gelu defaults to the tanh approximation,
# torch's nn.GELU does not, and zoos converted from torch must match.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "silu": nn.silu,
    "elu": nn.elu,
    "leaky_relu": nn.leaky_relu,  # slope 0.01, as torch
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation `name`; ValueError lists the known names."""
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(
        f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None
