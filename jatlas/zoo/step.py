"""One member of a population: its hyper-parameters, state, batches and training step.

Everything here is a pure function of one member, written for `jax.vmap`;
`jatlas.zoo.engine` vmaps (or loops), scans and shards it. Data live on device:
each step gathers the member's own batch from the full training arrays.

Divergence rule: a member diverges at the first step whose loss or updated
parameters are non-finite, or whose loss exceeds `divergence_factor * (1 + |l0|)`
(l0 = the member's first training loss). Its update at that step is dropped,
it is frozen from then on (`alive` False) and `diverged_step` records the step.

Usage:
  data = train_data(x_N..., y_TN..., in_task_TN)       # host arrays -> TrainData
  idx_B = member_batch(cfg, member, order_key, data, step)
  state, loss = member_step(cfg, pop, state, member, idx_B, data, frozen, step)
"""
import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jatlas.zoo import optim, shuffle


@flax.struct.dataclass
class Member:
  """One member's hyper-parameters; a population holds them with a leading member axis."""
  key: jax.Array             # uint32 (2,) raw PRNG key data of the member's seed
  task: jax.Array            # int32: the row of the targets (TrainData.y) it learns
  lr: jax.Array
  weight_decay: jax.Array
  optimizer: jax.Array       # int32 index into Population.optimizers
  init_scale: jax.Array
  total_steps: jax.Array     # int32: the member stops updating after this many steps
  extra: Any = ()            # the caller's own per-member values (any pytree)


@flax.struct.dataclass
class MemberState:
  params: Any                # the trained variables
  state: Any                 # variables updated but not trained, e.g. {"batch_stats": ...}
  opt_state: Any
  alive: jax.Array           # bool: False once the member diverged
  diverged_step: jax.Array   # int32: step at which it diverged, -1 if never
  loss_ref: jax.Array        # float32: its first training loss (NaN before the first step)


@flax.struct.dataclass
class TrainData:
  """Arrays every member indexes; member m learns targets row `m.task`."""
  x: Any                     # pytree of [N, ...] inputs, shared by every task
  y: Any                     # pytree of [T, N, ...] targets, one row per task
  in_task: jax.Array         # bool [T, N]: example n belongs to task t
  examples: jax.Array        # int32 [T, N]: each task's example indices first
  n_valid: jax.Array         # int32 [T]: number of examples in each task
  full: bool = flax.struct.field(pytree_node=False, default=False)  # in_task all True


def train_data(x, y, in_task_TN=None) -> TrainData:
  """Host arrays -> TrainData (NumPy, not yet on device). `in_task_TN` defaults to all."""
  y = jax.tree.map(np.asarray, y)
  t, n = jax.tree.leaves(y)[0].shape[:2]
  in_task_TN = np.ones((t, n), bool) if in_task_TN is None else np.asarray(in_task_TN, bool)
  examples_TN = np.argsort(~in_task_TN, axis=1, kind="stable").astype(np.int32)
  return TrainData(x=jax.tree.map(np.asarray, x), y=y, in_task=in_task_TN, examples=examples_TN,
                   n_valid=in_task_TN.sum(1).astype(np.int32), full=bool(in_task_TN.all()))


def labels_data(x_N, labels_TN) -> TrainData:
  """Classification data: integer labels [T, N], -1 = example not in task."""
  labels_TN = np.asarray(labels_TN, np.int32)
  return train_data(np.asarray(x_N, np.float32), labels_TN, labels_TN >= 0)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """What is static in every member's step."""
  batch_size: int
  steps_per_epoch: int
  divergence_factor: float = 1e3


def member_key(member: Member, stream: int):
  """Stream 0 initialises the member, stream 1 orders its batches."""
  return jax.random.fold_in(jax.random.wrap_key_data(member.key), stream)


def batch_indices(cfg: StepConfig, order_key, examples_N, n_valid, step, full: bool):
  """Example indices of batch `step`: epoch e visits the task's examples in a
  keyed random order, a fresh one per epoch."""
  n_max = examples_N.shape[-1]
  n = n_max if full else n_valid  # static n: cheaper, and shared across tasks
  epoch, j = jnp.divmod(step, cfg.steps_per_epoch)
  pos_B = (j * cfg.batch_size + jnp.arange(cfg.batch_size)) % n
  order_B = shuffle.permute(jax.random.fold_in(order_key, epoch), pos_B, n, n_max=n_max)
  return order_B if full else examples_N[order_B]


def member_batch(cfg: StepConfig, member: Member, order_key, data: TrainData, step):
  """The member's example indices for `step` -> int32 [B]."""
  return batch_indices(cfg, order_key, data.examples[member.task], data.n_valid[member.task],
                       step, data.full)


def gather_batch(data: TrainData, member: Member, idx_B, gather=None) -> dict:
  """{"x": inputs, "y": the member's targets} of examples idx_B; `gather(x, idx_B,
  member)` (Population.gather) reads the inputs, default rows idx_B of every input."""
  x = (jax.tree.map(lambda a: a[idx_B], data.x) if gather is None
       else gather(data.x, idx_B, member))
  return {"x": x, "y": jax.tree.map(lambda a: a[member.task][idx_B], data.y)}


def with_frozen(params, frozen):
  """What a loss sees: the trained params beside the frozen ones (top-level keys)."""
  return params if frozen is None else {**frozen, **params}


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def member_step(cfg: StepConfig, pop, state: MemberState, member: Member, idx_B,
                data: TrainData, frozen, step):
  """One optimizer step of `pop.loss` on examples `idx_B` (from `member_batch`);
  a member that diverges (module docstring) is frozen and marked."""
  batch = gather_batch(data, member, idx_B, pop.gather)
  (loss, new_state), grads = jax.value_and_grad(
      lambda p: pop.loss(with_frozen(p, frozen), state.state, batch, member),
      has_aux=True)(state.params)
  updates, opt_state = optim.update(pop.optimizers, member.optimizer, grads, state.opt_state,
                                    state.params, member.lr, member.weight_decay)
  params = optax.apply_updates(state.params, updates)
  active = state.alive & (step < member.total_steps)
  loss_ref = jnp.where(jnp.isnan(state.loss_ref), loss, state.loss_ref)
  exploded = loss > cfg.divergence_factor * (1 + jnp.abs(loss_ref))
  healthy = jnp.isfinite(loss) & _all_finite(params) & ~exploded
  ok = active & healthy
  new = MemberState(
      params=_select(ok, params, state.params),
      state=_select(ok, new_state, state.state),
      opt_state=_select(ok, opt_state, state.opt_state),
      alive=state.alive & (healthy | ~active),
      diverged_step=jnp.where(active & ~healthy, step, state.diverged_step),
      loss_ref=jnp.where(active, loss_ref, state.loss_ref))
  return new, jnp.where(active, loss, jnp.nan)


def member_eval(pop, state: MemberState, member: Member, data: TrainData, frozen, chunk: int):
  """`pop.evaluate` summed over all examples in chunks of `chunk` -> pytree of sums.
  Each batch carries `valid` (bool [B]): the example is in the member's task (and
  not chunk padding)."""
  n = data.in_task.shape[1]
  pad = (-n) % chunk
  chunked = lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
      -1, chunk, *a.shape[1:])
  gather = pop.gather
  if gather is None:
    xs = {"x": jax.tree.map(chunked, data.x)}
  else:  # chunks of example indices; the member gathers its own inputs per chunk
    xs = {"idx": chunked(jnp.arange(n))}
  xs.update(y=jax.tree.map(lambda a: chunked(a[member.task]), data.y),
            valid=chunked(data.in_task[member.task]))
  params = with_frozen(state.params, frozen)

  def sums(batch):
    if gather is not None:
      batch = {"x": gather(data.x, batch["idx"], member),
               **{k: v for k, v in batch.items() if k != "idx"}}
    return pop.evaluate(params, state.state, batch, member)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       jax.eval_shape(sums, jax.tree.map(lambda a: a[0], xs)))
  body = lambda acc, batch: (jax.tree.map(jnp.add, acc, sums(batch)), None)
  return jax.lax.scan(body, zeros, xs)[0]
