"""Train a zoo from a config: the population engine's first client.

`plan` turns a config into everything a run needs (checked, nothing written);
`train_zoo` then takes the directory's lock, starts or resumes, runs the
schedule and writes the zoo (table and manifest last: they mark it finished).

Running it again on a folder holding an unfinished run resumes from its last
training-state checkpoint, and the result equals an uninterrupted run; a run of
another config or other data is refused (ResumeMismatchError names the fields).

Usage:
  zoo = train_zoo(cfg, "runs/digits")   # cfg: jatlas.zoo.schema config -> jatlas.zoo.Zoo
"""
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time

import jax
import numpy as np
import pandas as pd
from flax import traverse_util
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jatlas import data, files
from jatlas.flat_names import flatten_variables
from jatlas.zoo import lock, recipe, schema, sharding, store
from jatlas.zoo.checkpoint import TrainCheckpoints, abstract_like
from jatlas.zoo.classifier import classification_metrics, classifier
from jatlas.zoo.engine import Engine
from jatlas.zoo.parents import Parents, load_parents
from jatlas.zoo.population import OPTIMIZERS, PopulationSpec
from jatlas.zoo.rows import checkpoint_rows, eval_summary
from jatlas.zoo.schedule import Schedule
from jatlas.zoo.step import Member, labels_data

RUN_RECORD = "run.json"  # config + data fingerprint of an unfinished run
METRICS = "metrics.jsonl"
TRAIN_STATE = "train_state"
RESUME_FREE = ("zoo.steps_per_call", "zoo.checkpoint_every")  # may change on resume


class ResumeMismatchError(ValueError):
  """The unfinished run in a directory was started with another config or data."""


@dataclasses.dataclass
class Run:
  """Everything fixed for the duration of one zoo run."""
  cfg: object
  out_dir: str
  ds: data.Dataset
  tasks: data.TaskSet
  spec: PopulationSpec
  sched: Schedule
  eng: Engine
  members: Member
  parents: Parents | None
  splits: dict          # split -> TrainData on device (train: the training data)
  record: dict          # what a resume must match: config and data fingerprint
  variables: dict       # {flat name: ShapeDtypeStruct} of one member's variables

  @property
  def m(self) -> int:
    return len(self.spec)

  def evaluate(self, states) -> dict:
    out = {}
    for split, split_data in self.splits.items():
      sums = sharding.to_host(self.eng.evaluate(states, self.members, split_data))
      loss, acc, bacc = classification_metrics(sums)
      out.update({f"{split}_loss": loss, f"{split}_acc": acc, f"{split}_bacc": bacc})
    return {k: np.asarray(v)[:self.m] for k, v in out.items()}

  def end_of_epoch(self, states, epoch: int, step: int, meta: dict) -> None:
    """Logs population metrics; at save epochs writes a shard and the members' rows."""
    metrics = self.evaluate(states)
    host = sharding.to_host({"variables": {"params": states.params, **states.state},
                             "alive": states.alive, "diverged": states.diverged_step})
    alive = np.asarray(host["alive"])[:self.m]
    primary = jax.process_index() == 0
    if primary:
      with open(os.path.join(self.out_dir, METRICS), "a") as f:
        f.write(json.dumps(eval_summary(epoch, step, metrics, alive)) + "\n")
    if epoch not in self.sched.save_epochs:
      return
    tensors = {k: np.asarray(v)[:self.m]
               for k, v in flatten_variables(host["variables"]).items()}
    entry = store.write_shard(self.out_dir, epoch, tensors) if primary else \
        {"file": store.shard_name(epoch), "epoch": epoch, "members": self.m}
    meta["shards"].append(entry)
    shard = entry["file"]
    meta["rows"].extend(checkpoint_rows(self.spec, self.cfg, epoch, step, shard, metrics, alive,
                                        np.asarray(host["diverged"])[:self.m], self.parents))


def _fingerprint(ds: data.Dataset, tasks: data.TaskSet) -> str:
  """sha256 of every split's inputs and task labels."""
  h = hashlib.sha256()
  for split in data.SPLITS:
    x, _ = ds.split(split)
    for a in (x, tasks.labels[split]):
      h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def plan(cfg, out_dir: str, devices=None) -> Run:
  """Checks the config and builds data, tasks, net, population and engine; writes nothing."""
  schema.validate(cfg)
  z = cfg.zoo
  ds = recipe.build_dataset(cfg)
  tasks = recipe.build_tasks(cfg, ds)
  model = recipe.build_model(cfg, tasks)
  kinds = tuple(o for o in OPTIMIZERS if o in set(z.optimizer))
  pop = classifier(model, ds.x_train[:1], optimizers=kinds)
  variables = flatten_variables(jax.eval_shape(model.init, jax.random.key(0), ds.x_train[:1]))
  parents = load_parents(z.parent, z.parent_epoch, reinit=tuple(z.reinit),
                         child_shapes={k: tuple(v.shape) for k, v in variables.items()})
  spec = recipe.build_population(cfg, tasks, num_parents=len(parents.rows) if parents else 0)
  in_task_TN = tasks.labels["train"] >= 0
  sched = Schedule.build(steps_per_epoch=-(-int(in_task_TN.sum(1).max()) // z.batch_size),
                         max_epoch=int(spec.epochs.max()), save_epochs=z.save_epochs,
                         member_epochs=spec.epochs, eval_every=z.eval_every,
                         checkpoint_every=z.checkpoint_every, steps_per_call=z.steps_per_call)
  eng = Engine(pop, batch_size=z.batch_size, steps_per_epoch=sched.steps_per_epoch,
               mesh=sharding.population_mesh(devices), shared_order=z.shared_order,
               order_seed=z.seed, divergence_factor=z.divergence_factor)
  members = eng.members(seed=spec.seed, task=spec.task, lr=spec.lr,
                        weight_decay=spec.weight_decay,
                        optimizer=[OPTIMIZERS[k] for k in spec.optimizer],
                        init_scale=spec.init_scale,
                        total_steps=spec.epochs * sched.steps_per_epoch)
  splits = {s: eng.put(labels_data(ds.split(s)[0], tasks.labels[s])) for s in data.SPLITS}
  record = {"config": json.loads(json.dumps(cfg.to_dict(), default=str)),
            "data_sha256": _fingerprint(ds, tasks)}
  return Run(cfg=cfg, out_dir=out_dir, ds=ds, tasks=tasks, spec=spec, sched=sched, eng=eng,
             members=members, parents=parents, splits=splits, record=record,
             variables=variables)


def differences(old: dict, new: dict, where: str = "in the unfinished run") -> list[str]:
  """'field: old -> new' for every differing leaf of two JSON records (configs or run
  records), except the fields that may change on resume."""
  a = traverse_util.flatten_dict(old, sep=".")
  b = traverse_util.flatten_dict(new, sep=".")
  return [f"{k}: {a.get(k, '(absent)')!r} {where}, {b.get(k, '(absent)')!r} now"
          for k in sorted(a.keys() | b.keys())
          if a.get(k) != b.get(k) and k.removeprefix("config.") not in RESUME_FREE]


def _check_resume(run: Run) -> None:
  path = os.path.join(run.out_dir, RUN_RECORD)
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise ResumeMismatchError(f"{run.out_dir} holds an unfinished run whose record {path} "
                              f"cannot be read ({e}); remove the folder or choose another "
                              "--out") from None
  diff = differences(old, run.record)
  if diff:
    raise ResumeMismatchError(
        f"{run.out_dir} holds an unfinished run of another config or data; resuming would "
        f"mix two runs. Rerun with the original config, or choose another --out.\n  "
        + "\n  ".join(diff))


def _keep_metrics_up_to(out_dir: str, step: int) -> None:
  """Drops metrics lines logged after the checkpoint (a kill between the two)."""
  path = os.path.join(out_dir, METRICS)
  if not os.path.isfile(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
  with files.atomic_path(path) as tmp, open(tmp, "w") as f:
    f.writelines(lines)


def _start_fresh(run: Run) -> None:
  """Clears what an unfinished run without a checkpoint left; records this run."""
  d = run.out_dir
  for path in glob.glob(os.path.join(d, "params-e*.safetensors")) + [os.path.join(d, METRICS)]:
    if os.path.exists(path):
      os.remove(path)
  files.write_json(os.path.join(d, RUN_RECORD), run.record)
  files.write_json(os.path.join(d, "config.json"), run.cfg.to_dict())


def _start(run: Run, ckpt: TrainCheckpoints):
  """(states, meta): fresh, or restored from the last checkpoint after checks."""
  start = run.parents.start(run.spec.parent_index, run.members.task.shape[0], run.eng.mesh) \
      if run.parents else None
  states = run.eng.init(run.members, start)
  primary = jax.process_index() == 0
  if ckpt.latest_step() is None:
    if primary:
      _start_fresh(run)
    return states, {"step": 0, "rows": [], "shards": []}
  if primary:
    _check_resume(run)
  states, meta = ckpt.restore(abstract_like(states))
  if primary:
    _keep_metrics_up_to(run.out_dir, meta["step"])
  return states, meta


def _train(run: Run, states, meta: dict, ckpt: TrainCheckpoints, progress: bool) -> dict:
  """Runs the schedule from meta["step"]: evaluations, saves, checkpoints."""
  sched, step = run.sched, meta["step"]
  bar = tqdm(total=sched.total_steps, initial=step, disable=not progress,
             desc=f"zoo {run.m} members", unit="step")
  if step == 0 and 0 in sched.save_epochs:
    run.end_of_epoch(states, 0, 0, meta)
  while step < sched.total_steps:
    n = sched.next_chunk(step)
    states, loss_SM = run.eng.run(states, run.members, run.splits["train"], step, n)
    step += n
    loss_M = np.asarray(sharding.to_host(loss_SM))[-1][:run.m]
    alive = np.asarray(sharding.to_host(states.alive))[:run.m]
    bar.update(n)
    bar.set_postfix(loss=f"{np.nanmean(loss_M):.3f}" if np.isfinite(loss_M).any() else "-",
                    alive=f"{alive.sum()}/{run.m}")
    epoch, rem = divmod(step, sched.steps_per_epoch)
    if rem == 0 and epoch in sched.eval_epochs:
      run.end_of_epoch(states, epoch, step, meta)
    meta["step"] = step
    if rem == 0 and epoch in sched.checkpoint_epochs:
      ckpt.save(step, states, meta)
  bar.close()
  return meta


def _refuse_finished(out_dir: str) -> None:
  if os.path.isfile(os.path.join(out_dir, store.TABLE)):
    raise FileExistsError(f"{out_dir} already holds a finished zoo; choose another --out")


def train_zoo(cfg, out_dir: str, *, progress: bool = True, devices=None) -> store.Zoo:
  """Trains (or resumes) the zoo described by `cfg` into `out_dir`; returns the Zoo.

  devices: the population is sharded over these (default: all, on all hosts).
  """
  out_dir = os.path.abspath(out_dir)
  _refuse_finished(out_dir)
  run = plan(cfg, out_dir, devices)
  writer = lock.exclusive(out_dir) if jax.process_index() == 0 else _no_lock(out_dir)
  with writer:
    _refuse_finished(out_dir)
    ckpt = TrainCheckpoints(os.path.join(out_dir, TRAIN_STATE))
    t0 = time.time()
    states, meta = _start(run, ckpt)
    meta = _train(run, states, meta, ckpt, progress)
    ckpt.close()
    return _finish(run, meta, time.time() - t0)


def _no_lock(out_dir: str):
  """Processes other than 0 share process 0's lock (and maybe its folder)."""
  os.makedirs(out_dir, exist_ok=True)
  return contextlib.nullcontext()


def _manifest(run: Run) -> dict:
  cfg = run.cfg
  return {
      "format": store.FORMAT, "version": store.VERSION, "name": cfg.name,
      "model": {"name": cfg.model.name, "kwargs": recipe.model_kwargs(cfg, run.tasks)},
      "data": {"name": cfg.data.name, "kwargs": dict(cfg.data.kwargs),
               "sha256": run.record["data_sha256"]},
      "input_shape": list(run.ds.input_shape),
      "tasks": list(run.tasks.names), "num_classes": run.tasks.num_classes,
      "members": run.m, "steps_per_epoch": run.sched.steps_per_epoch,
      "devices": run.eng.mesh.devices.size, "processes": jax.process_count(),
      "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                  for k, v in run.variables.items()},
  }


def _finish(run: Run, meta: dict, seconds: float) -> store.Zoo:
  """Writes the table and manifest last: their presence marks a finished zoo."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("jatlas-zoo-finish")
  d = run.out_dir
  if jax.process_index() == 0:
    table = pd.DataFrame(meta["rows"]).sort_values(["epoch", "member"]).reset_index(drop=True)
    files.write_parquet(os.path.join(d, store.TABLE), table)
    files.write_json(os.path.join(d, store.MANIFEST), {
        **_manifest(run), "shards": meta["shards"], "train_seconds": round(seconds, 2)})
    shutil.rmtree(os.path.join(d, TRAIN_STATE), ignore_errors=True)
    os.remove(os.path.join(d, RUN_RECORD))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("jatlas-zoo-written")
  return store.Zoo.open(d)
