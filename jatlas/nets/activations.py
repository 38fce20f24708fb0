"""Activation functions by name, with PyTorch semantics, and their unit symmetries.

`ODD` activations satisfy f(-x) = -f(x) (a hidden unit's sign can flip);
`POSITIVELY_HOMOGENEOUS` ones f(a x) = a f(x) for a > 0 (a unit can be rescaled).
jatlas.nets.symmetry reads these sets.

Usage:
  act = get_activation("gelu")  # exact erf GELU, like torch.nn.GELU()
  "tanh" in ODD, "relu" in POSITIVELY_HOMOGENEOUS  # True, True
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

# sigmoid(-x) = 1 - sigmoid(x) is odd only up to a shift: not an exact sign symmetry.
ODD = frozenset({"tanh", "identity"})
POSITIVELY_HOMOGENEOUS = frozenset({"relu", "leaky_relu", "identity"})


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation `name`; ValueError lists the known names."""
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(
        f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None
