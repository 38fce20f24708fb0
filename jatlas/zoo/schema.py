"""The zoo config schema: every field with its default, and one check of them all.

A config file starts from `default_config()` and overrides what differs; command
lines override fields (`--config.zoo.members=64`). `validate` runs before a zoo
run writes anything and lists every problem at once.

Usage:
  c = default_config()
  c.model.name, c.zoo.members = "lenet5", 100
  validate(c)                       # ConfigError listing every bad field
"""
import difflib
import math
from numbers import Number

import ml_collections

from jatlas.zoo.population import OPTIMIZERS

class ConfigError(ValueError):
  """One or more config fields are invalid; the message lists each."""


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "zoo"
  c.data = ml_collections.ConfigDict({"name": "digits", "kwargs": {}})
  c.tasks = ml_collections.ConfigDict(
      {"kind": "multiclass", "kwargs": {}, "label_noise": (), "noise_seed": 0})
  c.model = ml_collections.ConfigDict({"name": "mlp", "kwargs": {}})
  c.zoo = ml_collections.ConfigDict({
      "members": 8,             # population size; grid points cycle over members
      "seed": 0,                # member i has seed seed * 1e6 + i
      "lr": (1e-3,),            # grid axes: every combination is a grid point
      "weight_decay": (0.0,),
      "optimizer": ("adam",),   # adam | sgd | rmsprop
      "init_scale": (1.0,),
      "epochs": (1,),           # training length per member
      "batch_size": 32,
      "save_epochs": (0,),      # member weights written at these epochs (+ each final)
      "eval_every": 0,          # extra evaluations every k epochs (0: only at saves)
      "checkpoint_every": 1,    # training-state checkpoint every k epochs (resume)
      "steps_per_call": 0,      # steps per jitted scan call (0: one epoch)
      "wave_size": 0,           # members trained at once (0: what fits in free memory)
      "eval_train_examples": 0,  # train_* metrics on a fixed random subset this big (0: all)
      "shared_order": False,    # all members see the same batch order (faster, recorded)
      "divergence_factor": 1e3,  # loss above factor * (1 + first loss) = diverged
      "parent": "",             # zoo directory to fine-tune from
      "parent_epoch": -1,       # parent checkpoints to start from (-1: final)
      "reinit": (),             # modules re-initialised when fine-tuning, e.g. ("head",)
      "relation": "finetune",
  })
  return c


def _grid(z, name, problems, ok, want: str) -> None:
  values = tuple(z[name])
  if not values:
    problems.append(f"zoo.{name}=(): an empty grid axis (give at least one value)")
  bad = [v for v in values if not (isinstance(v, Number) and ok(v))]
  if bad:
    problems.append(f"zoo.{name}={values}: {bad} not {want}")


def _finite(v) -> bool:
  return math.isfinite(float(v))


def _zoo_problems(z) -> list[str]:
  problems = []
  _grid(z, "lr", problems, lambda v: _finite(v) and v > 0, "finite and > 0")
  _grid(z, "weight_decay", problems, lambda v: _finite(v) and v >= 0, "finite and >= 0")
  _grid(z, "init_scale", problems, lambda v: _finite(v) and v > 0, "finite and > 0")
  _grid(z, "epochs", problems, lambda v: int(v) == v and v >= 1, "whole numbers >= 1")
  if not tuple(z.optimizer):
    problems.append("zoo.optimizer=(): an empty grid axis (give at least one value)")
  for o in z.optimizer:
    if o not in OPTIMIZERS:
      near = difflib.get_close_matches(str(o), OPTIMIZERS, n=1)
      problems.append(f"zoo.optimizer: unknown {o!r}"
                      f"{f' (did you mean {near[0]!r}?)' if near else ''}; known {OPTIMIZERS}")
  for name, low in (("members", 1), ("batch_size", 1), ("seed", 0), ("eval_every", 0),
                    ("checkpoint_every", 0), ("steps_per_call", 0), ("parent_epoch", -1),
                    ("wave_size", 0), ("eval_train_examples", 0)):
    if z[name] < low:
      problems.append(f"zoo.{name}={z[name]}: must be >= {low}")
  if z.seed * 1_000_000 + z.members > 2**32:
    problems.append(f"zoo.seed={z.seed}: member seeds seed * 1e6 + i must stay < 2**32")
  longest = max((e for e in z.epochs if isinstance(e, Number)), default=0)
  outside = [e for e in z.save_epochs if not 0 <= e <= longest]
  if outside:
    problems.append(f"zoo.save_epochs: {outside} outside [0, {longest}] (the longest member)")
  if not (_finite(z.divergence_factor) and z.divergence_factor > 1):
    problems.append(f"zoo.divergence_factor={z.divergence_factor}: must be finite and > 1")
  if tuple(z.reinit) and not z.parent:
    problems.append(f"zoo.reinit={tuple(z.reinit)} needs zoo.parent (a zoo to fine-tune)")
  return problems


def _name_problem(field: str, value: str, known) -> list[str]:
  if value in known:
    return []
  near = difflib.get_close_matches(value, list(known), n=1)
  return [f"{field}={value!r}: unknown{f' (did you mean {near[0]!r}?)' if near else ''}; "
          f"known {sorted(known)}"]


def validate(cfg) -> None:
  """Raises ConfigError listing every invalid field of a zoo config."""
  from jatlas import data, nets  # imported here: config files import this module
  from jatlas.zoo.recipe import TASK_BUILDERS
  problems = _zoo_problems(cfg.zoo)
  problems += _name_problem("data.name", cfg.data.name, data.LOADERS)
  problems += _name_problem("model.name", cfg.model.name, nets.NETS)
  problems += _name_problem("tasks.kind", cfg.tasks.kind, TASK_BUILDERS)
  if problems:
    raise ConfigError(f"config {cfg.get('name', '')!r}: {len(problems)} invalid field(s)\n  "
                      + "\n  ".join(problems))
