"""The population engine: init, train and evaluate any population of pytrees as one program.

A `Population` says what its members are: `init(key, member) -> (params, state)`,
a per-member `loss(params, state, batch, member) -> (loss, new_state)` and, to
evaluate, `evaluate(params, state, batch, member) -> pytree of sums`. `params` are
trained (one optimizer per member, chosen by index into `optimizers`); `state`
is per member but not trained (BatchNorm statistics, a member's own frozen net);
`frozen` (given to the Engine) is ONE pytree shared by every member and never
copied per member: the loss sees it beside the params (`{**frozen, **params}`).
`batch` is {"x": inputs, "y": the member's targets} (+ "valid" when evaluating).
Classifiers of a flax net come ready-made (`jatlas.zoo.classifier`).

The engine keeps each member's steps in a `lax.scan`, draws each member's batches on
device, masks diverged members (`jatlas.zoo.step`), shards the member axis over
all devices and hosts, and on CPU trains conv nets one member after another per
device (each through a whole chunk of steps, so its working set stays in cache).

Usage:
  pop = Population(init=init_fn, loss=loss_fn, evaluate=eval_fn, optimizers=("adam",))
  eng = Engine(pop, batch_size=32, steps_per_epoch=50)            # mesh: all devices
  members = eng.members(seed=np.arange(64), lr=1e-3, total_steps=500)
  states = eng.init(members)                     # leading member axis, sharded
  data = eng.put(train_data(x_N, y_TN))          # replicated on every device
  states, loss_SM = eng.run(states, members, data, start=0, n_steps=100)
  sums_M = eng.evaluate(states, members, eng.put(train_data(x_test, y_test)))
  state, loss_S = eng.train_member(state, member, data, 0, 100)   # one member, unbatched
"""
import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jatlas.flat_names import flatten_variables, unflatten_variables
from jatlas.nets import conv
from jatlas.nets.cpu.member_loop import member_map
from jatlas.zoo import optim, sharding
from jatlas.zoo.population import OPTIMIZERS
from jatlas.zoo.step import (Member, MemberState, StepConfig, TrainData, member_batch,
                             member_eval, member_key, member_step)

EVAL_BUDGET = 8192  # member-examples per evaluation chunk, bounds activation memory
LOOP_EVAL_CHUNK = 128  # member loop: examples per chunk, one member per device at a time


@dataclasses.dataclass(frozen=True)
class Population:
  """What a population trains (module docstring)."""
  init: Callable                 # (key, member) -> (params, state)
  loss: Callable                 # (params, state, batch, member) -> (loss, new_state)
  evaluate: Callable | None = None  # (params, state, batch, member) -> pytree of sums
  optimizers: Sequence[str] = ("adam",)  # kinds present; member.optimizer indexes them
  # (x, idx_B, member) -> the member's inputs of examples idx_B; default: rows idx_B of
  # every input. A member reading one slice of a big input (the layer sweep: one layer
  # of [N, layers, ...]) gathers just that, not every slice's rows.
  gather: Callable | None = None


class Engine:
  """Jitted, sharded programs for one population."""

  def __init__(self, pop: Population, *, batch_size: int, steps_per_epoch: int, mesh=None,
               frozen: Any = None, shared_order: bool = False, order_seed: int = 0,
               member_loop: bool | None = None, divergence_factor: float = 1e3):
    """mesh: a 1-D mesh of the population axis (default: every device of every host).
    frozen: a pytree shared by all members (replicated, not trained).
    shared_order: every member sees the same batch order (drawn from `order_seed`).
    member_loop: train members one after another per device, each through all
    `n_steps` in its own scan, instead of vmapping each step over all members.
    Default: on CPU for params with convolution kernels (rank >= 3), else vmap."""
    unknown = [o for o in pop.optimizers if o not in OPTIMIZERS]
    if unknown or not pop.optimizers:
      raise ValueError(f"Population.optimizers {tuple(pop.optimizers)}: expected a non-empty "
                       f"subset of {OPTIMIZERS}")
    self.pop = dataclasses.replace(pop, optimizers=tuple(pop.optimizers))
    self.cfg = StepConfig(batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                          divergence_factor=divergence_factor)
    self.mesh = sharding.population_mesh() if mesh is None else mesh
    self.frozen = None if frozen is None else sharding.put_replicated(frozen, self.mesh)
    self.shared_order, self.order_seed = shared_order, order_seed
    self._member_loop = member_loop
    conv.prepare()  # on CPU: builds the convolution kernels now, not inside the first trace
    shard = sharding.member_sharding(self.mesh)
    self._init = jax.jit(self._init_members, out_shardings=shard)
    self._run = jax.jit(self._run_steps, static_argnums=(5,), donate_argnums=(0,))
    self._eval = jax.jit(self._evaluate, static_argnums=(4,))

  # ---------------------------------------------------------------- members

  def members(self, seed, *, task=0, lr=1e-3, weight_decay=0.0, optimizer="adam",
              init_scale=1.0, total_steps=2**31 - 1, extra=()) -> Member:
    """Per-member hyper-parameters from seeds (M,) and scalars or (M,) arrays, padded
    with inert members (they never train) to a multiple of the device count and
    sharded. Member keys derive from the seeds; outputs keep the padding: slice [:M]."""
    seed = np.asarray(seed, np.int64).reshape(-1)
    m = len(seed)
    if m < 1 or seed.min() < 0 or seed.max() >= 2**32:
      raise ValueError(f"member seeds must be 0 <= seed < 2**32, got {m} seeds "
                       f"in [{seed.min() if m else '-'}, {seed.max() if m else '-'}]")
    names = np.broadcast_to(np.asarray(optimizer, object), (m,))
    bad = sorted({str(o) for o in names} - set(self.pop.optimizers))
    if bad:
      raise ValueError(f"optimizer(s) {bad} not in Population.optimizers {self.pop.optimizers}")
    col = lambda v, dtype: np.broadcast_to(np.asarray(v, dtype), (m,))
    keys = np.asarray(jax.vmap(lambda s: jax.random.key_data(jax.random.key(s)))(
        seed.astype(np.uint32)))
    host = Member(key=keys, task=col(task, np.int32), lr=col(lr, np.float32),
                  weight_decay=col(weight_decay, np.float32),
                  optimizer=np.asarray([self.pop.optimizers.index(o) for o in names], np.int32),
                  init_scale=col(init_scale, np.float32),
                  total_steps=col(total_steps, np.int32),
                  extra=jax.tree.map(np.asarray, extra))
    m_pad = sharding.padded_size(m, self.mesh)
    pad = lambda a: np.concatenate([a, np.repeat(a[:1], m_pad - m, axis=0)])
    host = jax.tree.map(pad, host)
    host = host.replace(total_steps=np.where(np.arange(m_pad) < m, host.total_steps, 0))
    return sharding.put_members(host, self.mesh)

  def put(self, tree):
    """Host pytree (e.g. TrainData) -> replicated on every device of the mesh."""
    return sharding.put_replicated(tree, self.mesh)

  # -------------------------------------------------------------- one member

  def init_member(self, member: Member, start=None) -> MemberState:
    """A member's fresh state: `pop.init` from its key (stream 0), then every
    params/state leaf present in `start` = (params, state) replaced by it."""
    params, state = self.pop.init(member_key(member, 0), member)
    if start is not None:
      params, state = _overlay(params, start[0]), _overlay(state, start[1])
    return MemberState(
        params=params, state=state,
        opt_state=optim.init_opt_state(self.pop.optimizers, params, member.lr,
                                       member.weight_decay),
        alive=jnp.array(True), diverged_step=jnp.array(-1, jnp.int32),
        loss_ref=jnp.array(jnp.nan, jnp.float32))

  def order_key(self, member: Member):
    """The key of the member's batch order (stream 1, or the shared one)."""
    if self.shared_order:
      return jax.random.fold_in(jax.random.key(self.order_seed), 1)
    return member_key(member, 1)

  def train_member(self, state: MemberState, member: Member, data: TrainData, start,
                   n_steps: int, frozen=None, order_key=None):
    """One member through `n_steps` steps from step `start` -> (state, loss [n_steps]).
    frozen: default the Engine's; order_key: default `order_key(member)`."""
    cfg, pop = self.cfg, self.pop
    frozen = self.frozen if frozen is None else frozen
    order_key = self.order_key(member) if order_key is None else order_key

    # the next step's indices ride in the loop carry: a loop-carried buffer is
    # materialised, whereas XLA:CPU fuses the index arithmetic into each gather and
    # recomputes it there with scalar code
    def body(carry, step):
      state, idx_B = carry
      state, loss = member_step(cfg, pop, state, member, idx_B, data, frozen, step)
      return (state, member_batch(cfg, member, order_key, data, step + 1)), loss

    init = (state, member_batch(cfg, member, order_key, data, start))
    (state, _), loss_S = jax.lax.scan(body, init, start + jnp.arange(n_steps))
    return state, loss_S

  # -------------------------------------------------------------- population

  def member_loop(self, params) -> bool:
    """Whether members are looped (constructor docstring) for these params."""
    if self._member_loop is not None:
      return self._member_loop
    return jax.default_backend() == "cpu" and any(
        np.ndim(leaf) >= 4 for leaf in jax.tree.leaves(params))  # member axis + HWIO

  def init(self, members: Member, start=None) -> MemberState:
    """States of all members; start: optional (params, state) with a leading member
    axis, e.g. parents' weights for fine-tuning (leaves it lacks are initialised)."""
    return self._init(members, start)

  def _init_members(self, members: Member, start):
    # a loop over members compiles the initialisers (threefry per leaf) once for one
    # member, where a vmap compiles them for the whole member axis (about 2x longer)
    init_all = jax.vmap(self.init_member)
    if not self.member_loop(jax.eval_shape(init_all, members, start).params):
      return init_all(members, start)
    if start is None:
      return member_map(self.init_member, members, mesh=self.mesh)
    return member_map(self.init_member, members, start, mesh=self.mesh)

  def _order_keys(self, members: Member, params):
    if not self.shared_order:
      return jax.vmap(self.order_key)(members)
    key = self.order_key(None)
    if not self.member_loop(params):
      return key  # unbatched: the nets see shared inputs (the conv vmap rules' wide product)
    # one key per member, all the same: an unbatched key would make the conv vmap
    # rules gather every device's filters into one wide product
    key_data = jax.random.key_data(key)
    return jax.random.wrap_key_data(
        jnp.broadcast_to(key_data, (members.task.shape[0], *key_data.shape)))

  def _run_steps(self, states, members, data, frozen, start, n_steps: int):
    train = lambda s, m, k, data, frozen, start: self.train_member(s, m, data, start, n_steps,
                                                                  frozen, k)
    keys = self._order_keys(members, states.params)
    if not self.member_loop(states.params):
      key_axis = None if self.shared_order else 0
      states, loss_MS = jax.vmap(train, in_axes=(0, 0, key_axis, None, None, None))(
          states, members, keys, data, frozen, start)
      return states, loss_MS.T
    states, loss_MS = member_map(train, states, members, keys, mesh=self.mesh,
                                 shared=(data, frozen, start))
    return states, loss_MS.T

  def run(self, states: MemberState, members: Member, data: TrainData, start: int,
          n_steps: int):
    """Advances every member by `n_steps` steps from step `start`
    -> (states, loss [n_steps, M]); NaN loss for members not training."""
    return self._run(states, members, data, self.frozen, jnp.int32(start), n_steps)

  def _evaluate(self, states, members, data, frozen, chunk: int):
    fn = lambda s, m, data, frozen: member_eval(self.pop, s, m, data, frozen, chunk)
    if self.member_loop(states.params):
      return member_map(fn, states, members, mesh=self.mesh, shared=(data, frozen))
    return jax.vmap(fn, in_axes=(0, 0, None, None))(states, members, data, frozen)

  def evaluate(self, states: MemberState, members: Member, data: TrainData):
    """`pop.evaluate` summed over every example of each member's task -> [M, ...] sums."""
    if self.pop.evaluate is None:
      raise ValueError("this Population has no evaluate function")
    n = data.in_task.shape[1]
    if self.member_loop(states.params):  # chunks small enough for one member's
      budget = LOOP_EVAL_CHUNK  # activations to stay in cache
    else:
      budget = EVAL_BUDGET // max(1, members.task.shape[0] // self.mesh.devices.size)
    return self._eval(states, members, data, self.frozen, int(max(1, min(n, budget))))


def _overlay(fresh, start):
  """`fresh` with every leaf that `start` holds (by '/'-joined path) replaced."""
  if not start:
    return fresh
  flat = flatten_variables(fresh) if fresh else {}
  flat.update(flatten_variables(start))
  return unflatten_variables(flat)
