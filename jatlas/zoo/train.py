"""Train a zoo from a config: one vmapped, sharded program for all members.

Usage:
  zoo = train_zoo(get_config("smoke"), "runs/digits")   # -> jatlas.zoo.Zoo
Running it again on the same folder after an interruption resumes from the
last training-state checkpoint; the result equals an uninterrupted run.
"""
import dataclasses
import json
import os
import shutil
import time

import jax
import numpy as np
import pandas as pd
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jatlas import data, files
from jatlas.zoo import recipe, sharding, store
from jatlas.zoo.checkpoint import TrainCheckpoints, abstract_like
from jatlas.zoo.engine import Engine
from jatlas.zoo.parents import Parents, load_parents
from jatlas.zoo.population import OPTIMIZERS, PopulationSpec
from jatlas.zoo.rows import checkpoint_rows, eval_summary
from jatlas.zoo.schedule import Schedule
from jatlas.zoo.step import MemberHparams, StepConfig, device_data


class Interrupted(RuntimeError):
  """Raised by the `interrupt_after_chunks` test hook, as a kill would stop a run."""


def _member_hparams(spec: PopulationSpec, m_pad: int, kinds, steps_per_epoch: int):
  """Host arrays of per-member hyper-parameters, padded with inert members."""
  pad = lambda a: np.concatenate([a, np.repeat(a[:1], m_pad - len(a))])  # noqa: E731
  seeds = pad(spec.seed)
  if seeds.max() >= 2**32:
    raise ValueError(f"member seeds must be < 2**32, got {seeds.max()}: lower zoo.seed")
  keys = np.asarray(jax.vmap(lambda s: jax.random.key_data(jax.random.key(s)))(
      seeds.astype(np.uint32)))
  total = spec.epochs.astype(np.int32) * steps_per_epoch
  total = np.concatenate([total, np.zeros(m_pad - len(spec), np.int32)])  # pads never train
  kind_index = np.asarray([kinds.index(OPTIMIZERS[k]) for k in pad(spec.optimizer)], np.int32)
  return MemberHparams(key=keys, task=pad(spec.task), lr=pad(spec.lr),
                       weight_decay=pad(spec.weight_decay), optimizer=kind_index,
                       init_scale=pad(spec.init_scale), total_steps=total)


@dataclasses.dataclass
class _Run:
  """Everything fixed for the duration of one zoo run."""
  cfg: object
  out_dir: str
  ds: data.Dataset
  tasks: data.TaskSet
  spec: PopulationSpec
  sched: Schedule
  eng: Engine
  hp: MemberHparams
  parents: Parents | None

  @property
  def m(self) -> int:
    return len(self.spec)

  def evaluate(self, states) -> dict:
    out = {}
    for split in ("train", "val", "test"):
      x, _ = self.ds.split(split)
      loss, acc, bacc = self.eng.evaluate(states, self.hp, x, self.tasks.labels[split],
                                          self.tasks.num_classes)
      out.update({f"{split}_loss": loss, f"{split}_acc": acc, f"{split}_bacc": bacc})
    return {k: np.asarray(v)[:self.m] for k, v in sharding.to_host(out).items()}

  def end_of_epoch(self, states, epoch: int, step: int, meta: dict) -> None:
    """Logs population metrics; at save epochs writes a shard and the members' rows."""
    metrics = self.evaluate(states)
    host = sharding.to_host({"variables": {"params": states.params,
                                           "batch_stats": states.batch_stats},
                             "alive": states.alive, "diverged": states.diverged_step})
    alive = np.asarray(host["alive"])[:self.m]
    primary = jax.process_index() == 0
    if primary:
      with open(os.path.join(self.out_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(eval_summary(epoch, step, metrics, alive)) + "\n")
    if epoch not in self.sched.save_epochs:
      return
    tensors = {k: np.asarray(v)[:self.m]
               for k, v in store.flatten_variables(host["variables"]).items()}
    shard = store.write_shard(self.out_dir, epoch, tensors) if primary else \
        store.shard_name(epoch)
    meta["shards"].append({"file": shard, "epoch": epoch, "members": self.m})
    meta["rows"].extend(checkpoint_rows(self.spec, self.cfg, epoch, step, shard, metrics, alive,
                                        np.asarray(host["diverged"])[:self.m], self.parents))


def _setup(cfg, out_dir: str, devices) -> _Run:
  ds = recipe.build_dataset(cfg)
  tasks = recipe.build_tasks(cfg, ds)
  model = recipe.build_model(cfg, tasks)
  z = cfg.zoo
  parents = load_parents(z.get("parent", ""), z.get("parent_epoch", -1))
  spec = recipe.build_population(cfg, tasks, num_parents=len(parents.rows) if parents else 0)
  mesh = sharding.population_mesh(devices)
  kinds = tuple(o for o in OPTIMIZERS if o in set(z.optimizer))
  in_task_TN = tasks.labels["train"] >= 0
  sched = Schedule.build(steps_per_epoch=-(-int(in_task_TN.sum(1).max()) // z.batch_size),
                         max_epoch=int(spec.epochs.max()), save_epochs=z.save_epochs,
                         member_epochs=spec.epochs, eval_every=z.eval_every,
                         checkpoint_every=z.checkpoint_every, steps_per_call=z.steps_per_call)
  x_sample = ds.x_train[:1]
  step_cfg = StepConfig(
      apply_fn=model.apply, optimizers=kinds, batch_size=z.batch_size,
      steps_per_epoch=sched.steps_per_epoch,
      has_batch_stats="batch_stats" in jax.eval_shape(model.init, jax.random.key(0), x_sample),
      full_tasks=bool(in_task_TN.all()))
  eng = Engine(step_cfg, model, x_sample, mesh, shared_order=z.shared_order)
  m_pad = sharding.padded_size(len(spec), mesh)
  hp = sharding.put_members(_member_hparams(spec, m_pad, kinds, sched.steps_per_epoch), mesh)
  return _Run(cfg=cfg, out_dir=out_dir, ds=ds, tasks=tasks, spec=spec, sched=sched, eng=eng,
              hp=hp, parents=parents)


def train_zoo(cfg, out_dir: str, *, progress: bool = True, devices=None,
              interrupt_after_chunks: int | None = None) -> store.Zoo:
  """Trains (or resumes) the zoo described by `cfg` into `out_dir`; returns the Zoo.

  devices: the population is sharded over these (default: all, on all hosts).
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.isfile(os.path.join(out_dir, store.TABLE)):
    raise FileExistsError(f"{out_dir} already holds a finished zoo; choose another --out")
  os.makedirs(out_dir, exist_ok=True)
  run = _setup(cfg, out_dir, devices)
  mesh = run.eng.mesh
  train_data = sharding.put_replicated(
      device_data(run.ds.x_train, run.tasks.labels["train"]), mesh)
  if cfg.zoo.shared_order:  # one data order for all members, recorded in the table
    order_keys = jax.random.fold_in(jax.random.key(cfg.zoo.seed), 1)
  else:
    order_keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), 1))(
        run.hp.key)
  m_pad = run.hp.task.shape[0]
  states = run.eng.init(run.hp, run.parents.stacked(run.spec.parent_row, m_pad, mesh)
                        if run.parents else None)
  ckpt = TrainCheckpoints(os.path.join(out_dir, "train_state"))
  meta = {"step": 0, "rows": [], "shards": []}
  if ckpt.latest_step() is not None:
    states, meta = ckpt.restore(abstract_like(states))
  if jax.process_index() == 0:
    files.write_json(os.path.join(out_dir, "config.json"), cfg.to_dict())
  manifest = _manifest(cfg, run, states)

  sched, step, chunks, t0 = run.sched, meta["step"], 0, time.time()
  bar = tqdm(total=sched.total_steps, initial=step, disable=not progress,
             desc=f"zoo {run.m} members", unit="step")
  if step == 0 and 0 in sched.save_epochs:
    run.end_of_epoch(states, 0, 0, meta)
  while step < sched.total_steps:
    n = sched.next_chunk(step)
    states, loss_SM = run.eng.run(states, run.hp, order_keys, train_data, step, n)
    step, chunks = step + n, chunks + 1
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
    if interrupt_after_chunks is not None and chunks >= interrupt_after_chunks:
      ckpt.close()
      raise Interrupted(f"stopped after {chunks} chunks at step {step}")
  bar.close()
  ckpt.close()
  return _finish(out_dir, {**manifest, "shards": meta["shards"]}, meta["rows"],
                 time.time() - t0)


def _manifest(cfg, run: _Run, states) -> dict:
  tensors = store.flatten_variables({"params": states.params, "batch_stats": states.batch_stats})
  return {
      "format": store.FORMAT, "version": store.VERSION, "name": cfg.get("name", "zoo"),
      "model": {"name": cfg.model.name, "kwargs": recipe.model_kwargs(cfg, run.tasks)},
      "data": {"name": cfg.data.name, "kwargs": dict(cfg.data.get("kwargs", {}))},
      "input_shape": list(run.ds.input_shape),
      "tasks": list(run.tasks.names), "num_classes": run.tasks.num_classes,
      "members": run.m, "steps_per_epoch": run.sched.steps_per_epoch,
      "devices": run.eng.mesh.devices.size, "processes": jax.process_count(),
      "tensors": {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)}
                  for k, v in tensors.items()},
  }


def _finish(out_dir: str, manifest: dict, rows: list, seconds: float) -> store.Zoo:
  """Writes the table and manifest last: their presence marks a finished zoo."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("jatlas-zoo-finish")
  if jax.process_index() == 0:
    table = pd.DataFrame(rows).sort_values(["epoch", "member"]).reset_index(drop=True)
    files.write_parquet(os.path.join(out_dir, store.TABLE), table)
    files.write_json(os.path.join(out_dir, store.MANIFEST),
                     {**manifest, "train_seconds": round(seconds, 2)})
    shutil.rmtree(os.path.join(out_dir, "train_state"), ignore_errors=True)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("jatlas-zoo-written")
  return store.Zoo.open(out_dir)
