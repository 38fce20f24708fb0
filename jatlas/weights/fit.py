"""Train a Flax encoder module on the population engine, with early stopping.

The models a weight encoder learns from are its examples: `x_R` (a pytree of
[R, ...] arrays, one row per model) and targets `y_R`. Members of the population
are encoder replicas that differ by seed, learning rate or weight decay (a small
hyper-parameter grid trains as one program), or by `extra` values a caller's
module reads (the layer sweep: one member per layer). Every `eval_every` epochs
each member is scored on the validation models; each member keeps its best
parameters, and training stops once no member improved for `patience` evaluations.

Losses: multiclass softmax cross-entropy (y = class index), multilabel sigmoid
BCE (y = 0/1 [K], as ProbeX), regression MSE. Validation score (higher is better):
accuracy, element-wise accuracy, -MSE.

Usage:
  result = fit_module(module, x_R, y_R, task="multiclass", val=(x_V, y_V),
                      settings=FitSettings(epochs=200, seeds=(0, 1)))
  result.params            # best params, leading member axis
  result.best_member       # index of the member with the best validation score
"""
import dataclasses
import math
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jatlas.zoo.engine import Engine, Population
from jatlas.zoo.step import train_data


@dataclasses.dataclass(frozen=True)
class FitSettings:
  epochs: int = 200
  batch_size: int = 64
  lr: float | Sequence[float] = 1e-3
  weight_decay: float | Sequence[float] = 1e-5
  seeds: Sequence[int] = (0,)
  optimizer: str = "adam"      # jatlas.zoo.OPTIMIZERS: adam (AdamW) | sgd (momentum 0.9) | rmsprop
  eval_every: int = 5          # epochs between validation scores
  patience: int | None = 10    # evaluations without improvement before stopping
  # members one after another (a loop) instead of one vmapped program; None: loop
  # on CPU only, where XLA runs a vmapped big per-model network several times slower
  member_loop: bool | None = False


@dataclasses.dataclass
class FitResult:
  params: Any                  # best params per member, leading member axis (NumPy)
  val_score_M: np.ndarray      # best validation score of each member
  best_epoch_M: np.ndarray
  best_member: int
  history: list                # [{"epoch", "train_loss", "val_score": [M]}]
  members: dict                # the members' seed / lr / weight_decay


def task_loss(task: str, out, y):
  """Mean loss of outputs `out` [B, ...] against targets y."""
  if task == "multiclass":
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
  if task == "multilabel":
    return optax.sigmoid_binary_cross_entropy(out, y).mean()
  return jnp.mean((out.reshape(y.shape) - y) ** 2)


def task_score_sums(task: str, out, y, valid):
  """{"score": sum of per-model scores, "count": models} over valid rows."""
  if task == "multiclass":
    s = (jnp.argmax(out, -1) == y).astype(jnp.float32)
  elif task == "multilabel":
    s = jnp.mean(((out > 0) == (y > 0.5)).astype(jnp.float32), -1)
  else:
    s = -((out.reshape(y.shape) - y) ** 2)
  return {"score": jnp.sum(jnp.where(valid, s, 0.0)), "count": jnp.sum(valid)}


def encoder_population(apply: Callable, init: Callable, task: str,
                       optimizer: str = "adam", gather: Callable | None = None) -> Population:
  """apply(params, x_B, member) -> outputs; init(key, member) -> params; gather:
  Population.gather (how a member reads its batch of inputs)."""
  def loss(params, state, batch, member):
    return task_loss(task, apply(params, batch["x"], member), batch["y"]), state

  def evaluate(params, state, batch, member):
    del state
    return task_score_sums(task, apply(params, batch["x"], member), batch["y"], batch["valid"])

  return Population(init=lambda key, member: (init(key, member), {}), loss=loss,
                    evaluate=evaluate, optimizers=(optimizer,), gather=gather)


def _grid(settings: FitSettings, extra_M) -> dict:
  """Members: seeds x lr x weight decay (x the caller's extra rows, outermost)."""
  lrs, wds = np.atleast_1d(settings.lr), np.atleast_1d(settings.weight_decay)
  s, l, w = np.meshgrid(np.asarray(settings.seeds), lrs, wds, indexing="ij")
  s, l, w = s.ravel(), l.ravel(), w.ravel()
  n_extra = 1 if extra_M is None else len(jax.tree.leaves(extra_M)[0])
  grid = {"seed": np.tile(s, n_extra), "lr": np.tile(l, n_extra),
          "weight_decay": np.tile(w, n_extra)}
  if extra_M is not None:
    grid["extra"] = jax.tree.map(lambda a: np.repeat(np.asarray(a), len(s), axis=0), extra_M)
  return grid


def fit_module(module, x_R, y_R, *, task: str, val, settings: FitSettings = FitSettings(),
               extra_M=None, apply: Callable | None = None, sample=None,
               gather: Callable | None = None) -> FitResult:
  """Trains `module` (flax linen, `module.apply({"params": p}, x_B)`) on models
  x_R -> y_R as a population (module docstring). `apply(module, params, x_B, member)`
  overrides how a member applies it (e.g. to read `member.extra`); `sample` is then
  a module input to initialise from (default: the first model of x_R); `gather(x_R,
  idx_B, member)` how a member reads its batch of models (default: rows idx_B)."""
  y_R = np.asarray(y_R, np.int32 if task == "multiclass" else np.float32)
  r = len(y_R)
  x_sample = jax.tree.map(lambda a: jnp.asarray(a[:1]), x_R) if sample is None else sample
  apply = apply or (lambda module, p, x, member: module.apply({"params": p}, x))
  pop = encoder_population(lambda p, x, m: apply(module, p, x, m),
                           lambda key, m: module.init(key, x_sample)["params"], task,
                           settings.optimizer, gather)
  batch = min(settings.batch_size, r)
  spe = math.ceil(r / batch)
  loop = settings.member_loop
  loop = jax.default_backend() == "cpu" if loop is None else bool(loop)
  eng = Engine(pop, batch_size=batch, steps_per_epoch=spe, member_loop=loop)
  grid = _grid(settings, extra_M)
  m = len(grid["seed"])
  members = eng.members(seed=grid["seed"], lr=grid["lr"], weight_decay=grid["weight_decay"],
                        optimizer=settings.optimizer,
                        total_steps=settings.epochs * spe, extra=grid.get("extra", ()))
  states = eng.init(members)
  train = eng.put(train_data(x_R, y_R[None]))
  x_V, y_V = val
  val_data = eng.put(train_data(x_V, np.asarray(y_V, y_R.dtype)[None]))
  best = jax.tree.map(np.asarray, states.params)
  best_score, best_epoch = np.full(m, -np.inf), np.zeros(m, int)
  history, stale, epoch = [], 0, 0
  while epoch < settings.epochs:
    n = min(settings.eval_every, settings.epochs - epoch)
    states, loss_SM = eng.run(states, members, train, epoch * spe, settings.eval_every * spe)
    epoch += n
    sums = eng.evaluate(states, members, val_data)
    score_M = np.asarray(sums["score"] / jnp.maximum(sums["count"], 1))[:m]
    alive_M = np.asarray(states.alive)[:m]
    score_M = np.where(alive_M, score_M, -np.inf)  # a diverged member is never picked
    improved = score_M > best_score
    if improved.any():
      params = jax.tree.map(np.asarray, states.params)
      best = jax.tree.map(lambda b, p: np.where(
          np.pad(improved, (0, len(b) - m)).reshape(-1, *[1] * (b.ndim - 1)), p, b), best, params)
      best_score, best_epoch = np.where(improved, score_M, best_score), np.where(
          improved, epoch, best_epoch)
    history.append({"epoch": epoch, "train_loss": _mean_alive(np.asarray(loss_SM)[-spe:, :m]),
                    "val_score": score_M.round(5).tolist()})
    stale = 0 if improved.any() else stale + 1
    if settings.patience is not None and stale >= settings.patience:
      break
  _check_diverged(np.asarray(states.alive)[:m], np.asarray(states.diverged_step)[:m], grid)
  best = jax.tree.map(lambda b: b[:m], best)
  return FitResult(params=best, val_score_M=best_score, best_epoch_M=best_epoch,
                   best_member=int(np.argmax(best_score)), history=history,
                   members={k: np.asarray(v).tolist() for k, v in grid.items() if k != "extra"})


def _mean_alive(loss_SM) -> float:
  finite = loss_SM[np.isfinite(loss_SM)]
  return float(finite.mean()) if finite.size else float("nan")


def _check_diverged(alive_M, step_M, grid) -> None:
  """Diverged members are masked and reported; if every member diverged, nothing is
  left to keep: an error naming the learning rates, not a model at chance."""
  dead = np.flatnonzero(~alive_M)
  if not dead.size:
    return
  what = ", ".join(f"member {i} (seed {grid['seed'][i]}, lr {grid['lr'][i]:g}) at step "
                   f"{step_M[i]}" for i in dead[:5]) + (" ..." if dead.size > 5 else "")
  if dead.size == len(alive_M):
    raise RuntimeError(f"fit_module: every member diverged (non-finite or exploding loss): "
                       f"{what}; lower the learning rate or change the optimizer")
  warnings.warn(f"fit_module: {dead.size} of {len(alive_M)} members diverged and were "
                f"masked: {what}", RuntimeWarning, stacklevel=3)
