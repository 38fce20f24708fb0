"""Compiled population programs: init, training (a scan per member, vmapped or looped), evaluation.

Usage:
  eng = Engine(StepConfig(...), model, x_sample_1HWC, mesh)
  states = eng.init(hparams)                    # leading member axis, sharded
  states, loss_SM = eng.run(states, hparams, order_keys, data, start, n_steps)
  loss_M, acc_M, bacc_M = eng.evaluate(states, hparams, x_NHWC, labels_TN, num_classes)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jatlas.member_loop import member_map
from jatlas.zoo import optim, sharding
from jatlas.zoo.step import (DeviceData, MemberHparams, MemberState, StepConfig,
                             member_batch, member_eval, member_key, member_step)

EVAL_BUDGET = 8192  # member-examples per evaluation chunk, bounds activation memory
LOOP_EVAL_CHUNK = 128  # member loop: examples per chunk, one member per device at a time


class Engine:
  """Jitted, vmapped, sharded programs for one population (one architecture)."""

  def __init__(self, cfg: StepConfig, model: nn.Module, x_sample, mesh, *,
               shared_order: bool = False, member_loop: bool | None = None):
    """member_loop: train members one after another (per device), each through all
    `n_steps` in its own scan, instead of vmapping each step over all members.
    Default: on CPU for nets with convolutions (LeNet-5 zoo 1.6x faster: the member's
    activations and optimizer state stay in cache); vmap otherwise (the MLP zoo's
    steps are too small to run one member at a time)."""
    self.cfg, self.model, self.mesh = cfg, model, mesh
    self.x_sample = x_sample
    self.shared_order = shared_order
    self.member_loop = _has_conv(model, x_sample) if member_loop is None else member_loop
    shard = sharding.member_sharding(mesh)
    self._init = jax.jit(jax.vmap(self._init_member), out_shardings=shard)
    self._init_from = jax.jit(jax.vmap(self._init_from_parent), out_shardings=shard)
    self._run = jax.jit(self._run_steps, static_argnums=(5,), donate_argnums=(0,))
    self._eval = jax.jit(self._evaluate, static_argnums=(4, 5))

  def _init_member(self, hp: MemberHparams) -> MemberState:
    variables = self.model.init(member_key(hp, 0), self.x_sample)
    params = jax.tree.map(lambda w: w * hp.init_scale, variables["params"])
    return self._state(params, variables.get("batch_stats", {}), hp)

  def _init_from_parent(self, hp: MemberHparams, params, batch_stats) -> MemberState:
    return self._state(params, batch_stats, hp)

  def _state(self, params, batch_stats, hp):
    return MemberState(
        params=params, batch_stats=batch_stats,
        opt_state=optim.init_opt_state(self.cfg.optimizers, params, hp.lr, hp.weight_decay),
        alive=jnp.array(True), diverged_step=jnp.array(-1, jnp.int32))

  def init(self, hp: MemberHparams, parents=None) -> MemberState:
    """parents: optional (params, batch_stats) with leading member axis."""
    if parents is None:
      return self._init(hp)
    return self._init_from(hp, *parents)

  def _train_member(self, state, hp, order_key, data: DeviceData, start, n_steps: int):
    """One member through `n_steps` steps -> (state, loss [n_steps])."""
    cfg = self.cfg

    # the next step's indices ride in the loop carry: a loop-carried buffer is
    # materialised, whereas XLA:CPU fuses the index arithmetic into each gather and
    # recomputes it there with scalar code (measured 3 ms of a 20 ms MLP-zoo step)
    def body(carry, step):
      state, idx_B = carry
      state, loss = member_step(cfg, state, hp, idx_B, data, step)
      return (state, member_batch(cfg, hp, order_key, data, step + 1)), loss

    init = (state, member_batch(cfg, hp, order_key, data, start))
    (state, _), loss_S = jax.lax.scan(body, init, start + jnp.arange(n_steps))
    return state, loss_S

  def _run_steps(self, states, hp, order_keys, data: DeviceData, start, n_steps: int):
    train = lambda s, h, k, data, start: self._train_member(s, h, k, data, start, n_steps)
    if not self.member_loop:
      # vmap turns the scan inside out: one scan of vmapped steps over all members. With a
      # shared order and full tasks the indices stay unbatched, so the nets see shared
      # inputs (the conv vmap rules' wide-product path)
      key_axis = None if self.shared_order else 0
      states, loss_MS = jax.vmap(train, in_axes=(0, 0, key_axis, None, None))(
          states, hp, order_keys, data, start)
      return states, loss_MS.T
    if self.shared_order:  # one key per member all the same: an unbatched key would make
      # the conv vmap rules gather every device's filters into one wide product
      key_data = jax.random.key_data(order_keys)
      order_keys = jax.random.wrap_key_data(
          jnp.broadcast_to(key_data, (hp.task.shape[0], *key_data.shape)))
    states, loss_MS = member_map(train, states, hp, order_keys, mesh=self.mesh,
                                 shared=(data, start))
    return states, loss_MS.T

  def run(self, states, hp, order_keys, data, start: int, n_steps: int):
    """Advances every member by `n_steps` steps -> (states, loss [n_steps, M])."""
    return self._run(states, hp, order_keys, data, jnp.int32(start), n_steps)

  def _evaluate(self, states, hp, x_NHWC, labels_TN, chunk: int, num_classes: int):
    fn = lambda s, y, x: member_eval(self.cfg, s, x, y, chunk, num_classes)
    if self.member_loop:
      return member_map(fn, states, labels_TN[hp.task], mesh=self.mesh, shared=(x_NHWC,))
    return jax.vmap(fn, in_axes=(0, 0, None))(states, labels_TN[hp.task], x_NHWC)

  def evaluate(self, states, hp, x_NHWC, labels_TN, num_classes: int):
    """Per-member (loss, accuracy, balanced accuracy) over the examples of its task."""
    if self.member_loop:  # chunks small enough for one member's activations to stay in
      budget = LOOP_EVAL_CHUNK  # cache (2.9x faster for the LeNet-5 zoo)
    else:
      budget = EVAL_BUDGET // max(1, states.alive.shape[0] // self.mesh.devices.size)
    chunk = int(max(1, min(x_NHWC.shape[0], budget)))
    return self._eval(states, hp, x_NHWC, labels_TN, chunk, num_classes)


def _has_conv(model: nn.Module, x_sample) -> bool:
  """CPU backend and a kernel of rank >= 3 (a convolution) among the parameters."""
  if jax.default_backend() != "cpu":
    return False
  shapes = jax.eval_shape(model.init, jax.random.key(0), x_sample)
  return any(leaf.ndim >= 3 for leaf in jax.tree.leaves(shapes.get("params", {})))
