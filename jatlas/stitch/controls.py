"""Sanity controls for a stitch between a sender and a receiver (Hernandez et al. 2023;
Bansal et al. 2021): what a stitch reaches when the sender knows nothing.

  random-init sender     the sender's architecture, untrained: whatever a stitch gets
                         from it, the receiver's suffix does (and the stitch itself)
  shuffled-label sender  a net trained on labels independent of the inputs (e.g. a zoo
                         with `tasks.label_noise=(0.9,)`, uniform labels over 10 classes):
                         features that memorise, not generalise
  target="mse"           the stitch fitted to the receiver's own representation, not to
                         the task: if task-trained stitches reach far more accuracy, the
                         stitch found a way in that the receiver's own features do not use

Usage:
  models, pairs = with_controls(models, ("a", "b"), x, shuffled={"a_shuf": (net, v_shuf)},
                                random=zoo.variables(epoch_0_row_of_a))
  res = stitch_matrices(models, [("a", "b"), *pairs], x, y, x_test, y_test)
"""
from typing import Mapping

import jax
import numpy as np

RANDOM = ":random"  # suffix of a random-init copy's model name


def random_init(net, x, seed: int = 0) -> dict:
  """Untrained variables of `net` (its own initialisers; BatchNorm statistics at 0/1)."""
  return net.init(jax.random.key(seed), np.asarray(x[:1], np.float32))


def with_controls(models: Mapping, pair, x, *, shuffled: Mapping | None = None,
                  random: Mapping | None = None, seed: int = 0) -> tuple[dict, list]:
  """(models plus the control senders, the control pairs) for one (sender, receiver):
  (sender:random, receiver), (sender, receiver, "mse") and (name, receiver) for every
  shuffled-label sender in `shuffled` ({name: (net, variables)}). random: the untrained
  sender's variables (e.g. a zoo's epoch-0 checkpoint of the sender), default
  `random_init(net, x, seed)`."""
  sender, receiver = pair[:2]
  if sender not in models or receiver not in models:
    raise ValueError(f"with_controls: pair {tuple(pair)} names models not in {sorted(models)}")
  net = models[sender][0]
  v = random_init(net, x, seed) if random is None else random
  out = {**models, sender + RANDOM: (net, v), **(shuffled or {})}
  pairs = [(sender + RANDOM, receiver), (sender, receiver, "mse")]
  pairs += [(name, receiver) for name in (shuffled or {})]
  return out, pairs
