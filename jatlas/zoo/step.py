"""One member's training step and evaluation, written for `jax.vmap`.

Everything here is a pure function of one member's state and hyper-parameters;
`jatlas.zoo.engine` vmaps, scans and shards it. Data live on device: each step
gathers the member's own batch from the full training arrays.
"""
import dataclasses
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jatlas.zoo import optim, shuffle


@flax.struct.dataclass
class MemberState:
  params: Any
  batch_stats: Any           # {} for nets without BatchNorm
  opt_state: Any
  alive: jax.Array           # bool: False once the loss or weights went non-finite
  diverged_step: jax.Array   # int32: step at which it diverged, -1 if never


@flax.struct.dataclass
class MemberHparams:
  key: jax.Array             # uint32 (2,) raw PRNG key data of the member's seed
  task: jax.Array            # int32 task index
  lr: jax.Array
  weight_decay: jax.Array
  optimizer: jax.Array       # int32 index into StepConfig.optimizers
  init_scale: jax.Array
  total_steps: jax.Array     # int32: member stops updating after this many steps


@dataclasses.dataclass(frozen=True)
class StepConfig:
  apply_fn: Callable         # flax Module.apply
  optimizers: Sequence[str]  # optimizer kinds present in the population
  batch_size: int
  steps_per_epoch: int
  has_batch_stats: bool
  full_tasks: bool           # every example belongs to every task (no masking)


@flax.struct.dataclass
class DeviceData:
  x: jax.Array               # float32 [N, H, W, C] training inputs
  labels: jax.Array          # int32 [T, N], -1 = example not in task
  examples: jax.Array        # int32 [T, N], each task's example indices first
  n_valid: jax.Array         # int32 [T], number of examples in each task


def member_key(hp: MemberHparams, stream: int):
  return jax.random.fold_in(jax.random.wrap_key_data(hp.key), stream)


def device_data(x_NHWC, labels_TN) -> DeviceData:
  """Host arrays -> the training data every member indexes (NumPy, not yet on device)."""
  labels_TN = np.asarray(labels_TN, np.int32)
  examples_TN = np.argsort(labels_TN < 0, axis=1, kind="stable").astype(np.int32)
  return DeviceData(x=np.asarray(x_NHWC, np.float32), labels=labels_TN,
                    examples=examples_TN, n_valid=(labels_TN >= 0).sum(1).astype(np.int32))


def batch_indices(cfg: StepConfig, order_key, examples_N, n_valid, step):
  """Example indices of batch `step`: epoch e visits the task's examples in a
  keyed random order, a fresh one per epoch."""
  n_max = examples_N.shape[-1]
  n = n_max if cfg.full_tasks else n_valid  # static n: cheaper, and shared across tasks
  epoch, j = jnp.divmod(step, cfg.steps_per_epoch)
  pos_B = (j * cfg.batch_size + jnp.arange(cfg.batch_size)) % n
  order_B = shuffle.permute(jax.random.fold_in(order_key, epoch), pos_B, n, n_max=n_max)
  return order_B if cfg.full_tasks else examples_N[order_B]


def member_batch(cfg: StepConfig, hp: MemberHparams, order_key, data: DeviceData, step):
  """The member's example indices for `step` -> int32 [B]."""
  return batch_indices(cfg, order_key, data.examples[hp.task], data.n_valid[hp.task], step)


def loss_fn(cfg: StepConfig, params, batch_stats, x_BHWC, y_B):
  variables = {"params": params}
  if cfg.has_batch_stats:
    variables["batch_stats"] = batch_stats
    logits, new_vars = cfg.apply_fn(variables, x_BHWC, train=True, mutable=["batch_stats"])
    batch_stats = new_vars["batch_stats"]
  else:
    logits = cfg.apply_fn(variables, x_BHWC, train=True)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_B).mean()
  return loss, batch_stats


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def member_step(cfg: StepConfig, state: MemberState, hp: MemberHparams, idx_B,
                data: DeviceData, step):
  """One optimizer step on examples `idx_B` (from `member_batch`); a member whose
  update is non-finite is frozen and marked."""
  labels_N = data.labels[hp.task]
  (loss, batch_stats), grads = jax.value_and_grad(
      lambda p: loss_fn(cfg, p, state.batch_stats, data.x[idx_B], labels_N[idx_B]),
      has_aux=True)(state.params)
  updates, opt_state = optim.update(cfg.optimizers, hp.optimizer, grads, state.opt_state,
                                    state.params, hp.lr, hp.weight_decay)
  params = optax.apply_updates(state.params, updates)
  active = state.alive & (step < hp.total_steps)
  finite = jnp.isfinite(loss) & _all_finite(params)
  ok = active & finite
  new = MemberState(
      params=_select(ok, params, state.params),
      batch_stats=_select(ok, batch_stats, state.batch_stats),
      opt_state=_select(ok, opt_state, state.opt_state),
      alive=state.alive & (finite | ~active),
      diverged_step=jnp.where(active & ~finite, step, state.diverged_step))
  return new, jnp.where(active, loss, jnp.nan)


def member_eval(cfg: StepConfig, state: MemberState, x_NHWC, labels_N, chunk: int,
                num_classes: int):
  """Loss, accuracy and balanced accuracy (mean per-class recall) over the examples
  of the member's task -> (loss, acc, bacc)."""
  n = x_NHWC.shape[0]
  pad = (-n) % chunk
  x = jnp.pad(x_NHWC, [(0, pad)] + [(0, 0)] * (x_NHWC.ndim - 1))
  y = jnp.pad(labels_N, (0, pad), constant_values=-1)
  variables = {"params": state.params}
  if cfg.has_batch_stats:
    variables["batch_stats"] = state.batch_stats

  def body(carry, xy):
    loss_sum, hits_K, count_K = carry
    xc, yc = xy
    logits = cfg.apply_fn(variables, xc, train=False)
    valid = yc >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(yc, 0))
    onehot_BK = jax.nn.one_hot(yc, num_classes) * valid[:, None]  # -1 -> all zeros
    correct = (jnp.argmax(logits, -1) == yc)[:, None]
    return (loss_sum + jnp.sum(jnp.where(valid, ce, 0.0)),
            hits_K + jnp.sum(onehot_BK * correct, 0), count_K + jnp.sum(onehot_BK, 0)), None

  xs = (x.reshape(-1, chunk, *x.shape[1:]), y.reshape(-1, chunk))
  zeros_K = jnp.zeros(num_classes)
  (loss_sum, hits_K, count_K), _ = jax.lax.scan(body, (0.0, zeros_K, zeros_K), xs)
  total = jnp.maximum(count_K.sum(), 1)
  present = count_K > 0
  recall_K = jnp.where(present, hits_K / jnp.maximum(count_K, 1), 0.0)
  return loss_sum / total, hits_K.sum() / total, recall_K.sum() / jnp.maximum(present.sum(), 1)
