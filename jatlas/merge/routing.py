"""Learned routing between frozen specialists of one StagedNet (Pari et al. 2024, sec. 1.6).

Each stage l with variables becomes a dense mixture of experts: a bias-free linear gate
on the stage's input h (global-average-pooled [N, H, W, C] -> [N, C] when h is a
feature map, else flattened) gives logits over the stage's experts, softmax per
example (dense: no top-k, no renormalisation), and
  h_l = sum_e p_e(h) * expert_e(h).
Experts of stage l with `depths=m`: for each specialist k (k-major order), its stages
l, l+1, ..., l+m-1 (past the last stage the remainder is taken downwards: l-1, l-2,
...), keeping those that have variables and whose input and output shapes equal stage
l's, so blocks that change resolution are mixed only with themselves; depths=1 is every
specialist's own stage l. Stages without variables (pooling) run once, not routed.
Only the gates train (the engine's `frozen` holds the specialists, BatchNorm running
statistics included, eval mode); gates start at zero, i.e. the uniform mixture, which
for depths=1 is the feature average with alpha = 1/K at every stage. Members of the
population differ by seed (batch order) and learning rate.

Usage:
  res = train_router(net, [va, vb], x_N, y_N, depths=2, x_test=x_T, y_test=y_T,
                     seeds=(0, 1))                    # Adam 5e-3, 30 epochs
  res["test_acc_M"], res["experts"]                  # {"block1": [(0, "block1"), ...]}
  gates = jax.tree.map(lambda a: a[0], res["params"])   # member 0
  logits = routed_logits(net, [va, vb], gates, x_T, depths=2)
  routing_experts(net, x_N, 2, depths=2); init_gates(net, x_N, 2)   # rule; zero gates
"""
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jatlas.merge.feature_mix import (check_specialists, map_batches, mix_forward,
                                      stage_infos)
from jatlas.zoo import Engine, Population, labels_data


def _depth_window(l: int, num_stages: int, depths: int) -> list[int]:
  """Stages l, l+1, ..., l+depths-1; past the last stage, the rest downwards from l-1."""
  up = list(range(l, min(l + depths, num_stages)))
  return up + list(range(l - 1, max(l - 1 - (depths - len(up)), -1), -1))


def _expert_index(infos: tuple, k: int, depths: int) -> tuple:
  """Per stage: ((specialist, stage index), ...) of its experts, None if not routed."""
  if not isinstance(depths, (int, np.integer)) or depths < 1:
    raise ValueError(f"depths={depths!r}: expected an int >= 1")
  out = []
  for l, info in enumerate(infos):
    if not info.has_variables:
      out.append(None)
      continue
    same = [j for j in _depth_window(l, len(infos), int(depths)) if infos[j].has_variables
            and (infos[j].in_shape, infos[j].out_shape) == (info.in_shape, info.out_shape)]
    out.append(tuple((s, j) for s in range(k) for j in same))
  return tuple(out)


def routing_experts(net, x, num_specialists: int, *, depths: int = 1) -> dict:
  """{routed tap: [(specialist k, tap of its stage), ...]}, the gate's output order."""
  infos = stage_infos(net, np.asarray(x, np.float32))
  index = _expert_index(infos, num_specialists, depths)
  return {info.tap: [(k, infos[j].tap) for k, j in experts]
          for info, experts in zip(infos, index) if experts is not None}


def _gate_input(h):
  """[N, H, W, C] -> [N, C] (global average pool); anything else flattened to [N, D]."""
  return h.mean(axis=(1, 2)) if h.ndim == 4 else h.reshape(h.shape[0], -1)


def _gate_dim(in_shape: tuple) -> int:
  return in_shape[-1] if len(in_shape) == 3 else math.prod(in_shape)


def init_gates(net, x, num_specialists: int, *, depths: int = 1) -> dict:
  """Zero gates {tap: {"kernel": [D, E]}}: every routed stage starts as the uniform mix."""
  infos = stage_infos(net, np.asarray(x, np.float32))
  index = _expert_index(infos, num_specialists, depths)
  return {info.tap: {"kernel": jnp.zeros((_gate_dim(info.in_shape), len(experts)),
                                         jnp.float32)}
          for info, experts in zip(infos, index) if experts is not None}


def _check_gates(gates, want) -> None:
  """gates has want's taps and [D, E] kernels; every mismatch in one error."""
  got = {t: np.shape(g.get("kernel")) if isinstance(g, dict) else None
         for t, g in dict(gates).items()}
  problems = [f"{t}: missing" for t in want if t not in got]
  problems += [f"{t}: not a routed stage" for t in got if t not in want]
  problems += [f"{t}: kernel shape {got[t]}, expected {want[t]['kernel'].shape} "
               f"(D = gate input, E = experts; no member axis)"
               for t in want if t in got and got[t] != want[t]["kernel"].shape]
  if problems:
    raise ValueError("gate_params do not fit the routed net:\n  " + "\n  ".join(problems))


def _routed(net, infos, index, variables_K, gates, x):
  def weights(l, h):
    logits_NE = _gate_input(h) @ gates[infos[l].tap]["kernel"]
    return jax.nn.softmax(logits_NE, axis=-1)
  return mix_forward(net, infos, variables_K, index, weights, x)


@functools.lru_cache(maxsize=None)
def _routed_fn(net, infos: tuple, index: tuple):
  return jax.jit(functools.partial(_routed, net, infos, index))


def routed_logits(net, variables_K: Sequence, gate_params, x, *, depths: int = 1,
                  batch_size: int | None = None):
  """Logits of the routed net for one set of gates (no member axis), eval mode."""
  variables_K = check_specialists("routed_logits", variables_K)
  infos = stage_infos(net, np.asarray(x, np.float32))
  index = _expert_index(infos, len(variables_K), depths)
  _check_gates(gate_params, init_gates(net, x, len(variables_K), depths=depths))
  fn = _routed_fn(net, infos, index)
  return map_batches(lambda xb: fn(variables_K, gate_params, xb), x, batch_size)


def _population(net, infos, index, gates0, optimizer: str) -> Population:
  def init(key, member):
    return {"gates": gates0}, {}

  def forward(params, x):
    return _routed(net, infos, index, params["experts"], params["gates"], x)

  def loss(params, state, batch, member):
    logits = forward(params, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), state

  def evaluate(params, state, batch, member):
    logits = forward(params, batch["x"])
    valid = batch["valid"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(batch["y"], 0))
    hit = (jnp.argmax(logits, -1) == batch["y"]) & valid
    return {"correct": hit.sum(), "count": valid.sum(), "loss": jnp.where(valid, ce, 0).sum()}

  return Population(init, loss, evaluate, optimizers=(optimizer,))


def train_router(net, variables_K: Sequence, x, y, *, depths: int = 1, x_test=None,
                 y_test=None, seeds: Sequence[int] = (0,), lr=5e-3, epochs: int = 30,
                 batch_size: int = 128, optimizer: str = "adam",
                 weight_decay: float = 0.0) -> dict:
  """{"params" (gates, member axis), "final_loss_M", "seeds", "experts"}
  (+ "test_acc_M", "test_loss_M" with test data); one member per seed (lr: scalar or [M])."""
  variables_K = check_specialists("train_router", variables_K)
  if epochs < 1:
    raise ValueError(f"train_router: epochs={epochs}, expected >= 1")
  x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
  infos = stage_infos(net, x)
  index = _expert_index(infos, len(variables_K), depths)
  bs = min(batch_size, len(x))
  spe = math.ceil(len(x) / bs)
  pop = _population(net, infos, index, init_gates(net, x, len(variables_K), depths=depths),
                    optimizer)
  eng = Engine(pop, batch_size=bs, steps_per_epoch=spe, frozen={"experts": variables_K})
  lrs = np.broadcast_to(np.asarray(lr, np.float64), (len(seeds),))
  members = eng.members(seed=np.asarray(seeds), lr=lrs, optimizer=optimizer,
                        weight_decay=weight_decay, total_steps=epochs * spe)
  states, loss_SM = eng.run(eng.init(members), members, eng.put(labels_data(x, y[None])), 0,
                            epochs * spe)
  m = len(seeds)
  out = {"params": jax.tree.map(lambda a: np.asarray(a)[:m], states.params["gates"]),
         "final_loss_M": np.asarray(loss_SM)[-1, :m], "seeds": list(seeds),
         "experts": routing_experts(net, x, len(variables_K), depths=depths)}
  if x_test is not None:
    sums = eng.evaluate(states, members, eng.put(labels_data(
        np.asarray(x_test, np.float32), np.asarray(y_test, np.int32)[None])))
    out["test_acc_M"] = np.asarray(sums["correct"] / sums["count"])[:m]
    out["test_loss_M"] = np.asarray(sums["loss"] / sums["count"])[:m]
  return out
