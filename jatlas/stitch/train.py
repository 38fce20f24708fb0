"""Train stitches between two frozen nets as one population on the engine.

The stitched forward pass is
  receiver.apply(vr, stitch(sender.apply(vs, x, stop=send_tap)), start=recv_tap)
and only the stitch trains: sender and receiver variables (BatchNorm statistics
included, used as running averages) are the engine's `frozen` pytree, shared by
every member and never copied. Members differ by seed and learning rate; all of them
share one (sender tap, receiver tap) pair, since that fixes the stitch's shapes.
target="task": cross-entropy through the receiver (task-loss matching);
target="mse": the stitch fitted to the receiver's own representation at recv_tap
(the sanity control of Hernandez et al.: does a task-trained stitch hack the receiver?).
init="direct": every member starts from the least-squares stitch (`direct_match`).

Usage:
  res = train_stitches(sender, vs, receiver, vr, "conv2", "conv2", x_N, y_N,
                       x_test=x_T, y_test=y_T, seeds=(0, 1))  # Adam 1e-3, 30 epochs
  res["test_acc_M"], res["params"]            # per member; params with a member axis
  stitched_logits(sender, vs, receiver, vr, "conv2", "conv2", stitch_params, x)
"""
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jatlas.stitch.direct import direct_match
from jatlas.stitch.layer import Stitch
from jatlas.zoo import Engine, Population, labels_data


def _module(sender, vs, receiver, vr, send_tap, recv_tap, x, kernel, norm):
  h = sender.apply(vs, x[:2], stop=send_tap)
  out = receiver.apply(vr, x[:2], stop=recv_tap)
  return Stitch(out_shape=tuple(out.shape[1:]), kernel=kernel, norm=norm), h


def stitched_logits(sender, vs, receiver, vr, send_tap, recv_tap, stitch_params, x,
                    kernel: int = 1, norm: bool = False):
  stitch, _ = _module(sender, vs, receiver, vr, send_tap, recv_tap, x, kernel, norm)
  h = stitch.apply({"params": stitch_params}, sender.apply(vs, x, stop=send_tap))
  return receiver.apply(vr, h, start=recv_tap)


def train_stitches(sender, vs, receiver, vr, send_tap: str, recv_tap: str, x, y, *,
                   x_test=None, y_test=None, seeds: Sequence[int] = (0,), lr=1e-3,
                   epochs: int = 30, batch_size: int = 128, kernel: int = 1,
                   norm: bool = False, target: str = "task", init: str = "random") -> dict:
  if target not in ("task", "mse") or init not in ("random", "direct") or epochs < 1:
    raise ValueError(f"target={target!r} (task | mse), init={init!r} (random | direct), "
                     f"epochs={epochs} (>= 1)")
  x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
  stitch, h_sample = _module(sender, vs, receiver, vr, send_tap, recv_tap, x, kernel, norm)
  start = None
  if init == "direct":
    if kernel != 1 or norm:
      raise ValueError("init='direct' fits the plain 1x1 / Dense stitch (kernel=1, norm=False)")
    start = direct_match(sender.apply(vs, x, stop=send_tap), receiver.apply(vr, x, stop=recv_tap))

  def init_fn(key, member):
    p = stitch.init(key, h_sample)["params"]
    return {"stitch": p if start is None else jax.tree.map(jnp.asarray, start)}, {}

  def forward(params, batch):
    h = stitch.apply({"params": params["stitch"]},
                     sender.apply(params["sender"], batch["x"], stop=send_tap))
    return h, receiver.apply(params["receiver"], h, start=recv_tap)

  def loss(params, state, batch, member):
    h, logits = forward(params, batch)
    if target == "mse":
      want = receiver.apply(params["receiver"], batch["x"], stop=recv_tap)
      return jnp.mean((h - want) ** 2), state
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), state

  def evaluate(params, state, batch, member):
    _, logits = forward(params, batch)
    hit = (jnp.argmax(logits, -1) == batch["y"]) & batch["valid"]
    return {"correct": hit.sum(), "count": batch["valid"].sum()}

  spe = math.ceil(len(x) / min(batch_size, len(x)))
  eng = Engine(Population(init_fn, loss, evaluate), batch_size=min(batch_size, len(x)),
               steps_per_epoch=spe, frozen={"sender": vs, "receiver": vr})
  lrs = np.broadcast_to(np.asarray(lr, np.float64), (len(seeds),))
  members = eng.members(seed=np.asarray(seeds), lr=lrs, total_steps=epochs * spe)
  states, loss_SM = eng.run(eng.init(members), members, eng.put(labels_data(x, y[None])), 0,
                            epochs * spe)
  out = {"params": jax.tree.map(lambda a: np.asarray(a)[:len(seeds)], states.params["stitch"]),
         "final_loss_M": np.asarray(loss_SM)[-1, :len(seeds)], "seeds": list(seeds)}
  if x_test is not None:
    sums = eng.evaluate(states, members, eng.put(labels_data(
        np.asarray(x_test, np.float32), np.asarray(y_test, np.int32)[None])))
    out["test_acc_M"] = np.asarray(sums["correct"] / sums["count"])[:len(seeds)]
  return out
