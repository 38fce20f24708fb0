"""Per-member optimizers inside one vmapped program.

Each member picks its optimizer by index; every optimizer kind present in the
population is stepped and the member's own update is selected. For small zoo
nets the extra optimizer state is negligible, and it keeps one compiled program.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import optax


def make_tx(name: str, lr, weight_decay) -> optax.GradientTransformation:
  """One optimizer with (traced) per-member learning rate and weight decay."""
  if name == "adam":  # decoupled weight decay (AdamW); wd=0 is plain Adam
    return optax.adamw(lr, weight_decay=weight_decay)
  if name == "sgd":  # SGD with momentum 0.9 and L2 weight decay
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=0.9))
  if name == "rmsprop":
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.rmsprop(lr))
  raise ValueError(f"unknown optimizer {name!r}")


def init_opt_state(kinds: Sequence[str], params, lr, weight_decay):
  return tuple(make_tx(k, lr, weight_decay).init(params) for k in kinds)


def update(kinds: Sequence[str], kind_index, grads, opt_state, params, lr, weight_decay):
  """Returns (updates, new_opt_state) of the member's optimizer `kinds[kind_index]`."""
  results = [make_tx(k, lr, weight_decay).update(grads, s, params)
             for k, s in zip(kinds, opt_state)]
  updates = results[0][0]
  for i, (u, _) in enumerate(results[1:], start=1):
    updates = jax.tree.map(lambda a, b, i=i: jnp.where(kind_index == i, b, a), updates, u)
  return updates, tuple(s for _, s in results)
