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
from jatlas.flat_names import flatten_variables, unflatten_variables
from jatlas.zoo import lock, recipe, schema, sharding, store, waves
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
  parents: Parents | None
  splits: dict          # split -> TrainData on device (train: the training data)
  eval_splits: dict     # split -> TrainData evaluated (train: maybe a fixed subset)
  record: dict          # what a resume must match: config and data fingerprint
  variables: dict       # {flat name: ShapeDtypeStruct} of one member's variables
  waves: list           # [(start, stop)] member ranges trained one after another
  wave_note: str        # how the wave size was chosen
  clock: tuple = (0.0, 0.0)  # (time.time() when this process began, seconds trained before)

  def train_seconds(self) -> float:
    """Seconds of training over every process of the run: each one's time up to its
    last checkpoint (work redone after an interruption counts once)."""
    began, before = self.clock
    return before + time.time() - began

  @property
  def m(self) -> int:
    return len(self.spec)

  def wave_members(self, w: int) -> Member:
    a, b = self.waves[w]
    spec, sched = self.spec.take(slice(a, b)), self.sched
    return self.eng.members(seed=spec.seed, task=spec.task, lr=spec.lr,
                            weight_decay=spec.weight_decay,
                            optimizer=[OPTIMIZERS[k] for k in spec.optimizer],
                            init_scale=spec.init_scale,
                            total_steps=spec.epochs * sched.steps_per_epoch)

  def shard(self, epoch: int, w: int) -> str:
    return store.shard_name(epoch, w if len(self.waves) > 1 else None)

  def evaluate(self, states, members: Member, n: int) -> dict:
    out = {}
    for split, split_data in self.eval_splits.items():
      sums = sharding.to_host(self.eng.evaluate(states, members, split_data))
      loss, acc, bacc = classification_metrics(sums)
      out.update({f"{split}_loss": loss, f"{split}_acc": acc, f"{split}_bacc": bacc})
    return {k: np.asarray(v)[:n] for k, v in out.items()}

  def end_of_epoch(self, states, members: Member, w: int, epoch: int, step: int,
                   meta: dict) -> None:
    """Logs the wave's metrics; at save epochs writes its shard and the members' rows."""
    a, b = self.waves[w]
    metrics = self.evaluate(states, members, b - a)
    host = sharding.to_host({"alive": states.alive, "diverged": states.diverged_step})
    alive = np.asarray(host["alive"])[:b - a]
    primary = jax.process_index() == 0
    if primary:
      line = eval_summary(epoch, step, metrics, alive)
      if len(self.waves) > 1:
        line.update(wave=w, members=[a, b])
      with open(os.path.join(self.out_dir, METRICS), "a") as f:
        f.write(json.dumps(line) + "\n")
    if epoch not in self.sched.save_epochs:
      return
    variables = sharding.to_host({"params": states.params, **states.state})
    tensors = {k: np.asarray(v)[:b - a] for k, v in flatten_variables(variables).items()}
    del variables
    name = self.shard(epoch, w)
    entry = store.write_shard(self.out_dir, epoch, tensors, name=name) if primary else \
        {"file": name, "epoch": epoch, "members": b - a}
    del tensors
    meta["shards"].append(entry)
    if primary:
      meta["bytes_written"] += os.path.getsize(os.path.join(self.out_dir, name))
    meta["rows"].extend(checkpoint_rows(self.spec, self.cfg, epoch, step, name, metrics, alive,
                                        np.asarray(host["diverged"])[:b - a], self.parents,
                                        members=(a, b)))
    meta["params_from"] = name  # this step's params and state are in the shard


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
  splits = {s: eng.put(labels_data(ds.split(s)[0], tasks.labels[s])) for s in data.SPLITS}
  subset = _train_subset(ds, tasks, z.eval_train_examples, z.seed, eng)
  eval_splits = splits if subset is None else {**splits, "train": subset}
  waves, note = _plan_waves(z.wave_size, eng, len(spec))
  record = {"config": json.loads(json.dumps(cfg.to_dict(), default=str)),
            "data_sha256": _fingerprint(ds, tasks), "waves": [list(w) for w in waves]}
  return Run(cfg=cfg, out_dir=out_dir, ds=ds, tasks=tasks, spec=spec, sched=sched, eng=eng,
             parents=parents, splits=splits, eval_splits=eval_splits, record=record,
             variables=variables,
             waves=waves, wave_note=note)


def _train_subset(ds: data.Dataset, tasks: data.TaskSet, n: int, seed: int, eng: Engine):
  """The train split's first n examples of a permutation drawn from `seed`, on device;
  None for n = 0 or n >= the split's size (evaluate all of it)."""
  x_N = ds.split("train")[0]
  if not 0 < n < len(x_N):
    return None
  idx = np.sort(np.random.default_rng(seed).permutation(len(x_N))[:n])
  return eng.put(labels_data(x_N[idx], tasks.labels["train"][:, idx]))


def _plan_waves(wave_size: int, eng: Engine, m: int) -> tuple[list, str]:
  """([(start, stop)], note): zoo.wave_size members at once, or (0) what fits in memory."""
  devices = eng.mesh.devices.size
  if wave_size:
    size, note = wave_size, f"wave size {wave_size} (zoo.wave_size)"
  else:
    size, note = waves.choose_wave_size(m, waves.state_bytes(eng), devices)
  return waves.wave_slices(m, size, devices), note


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
  if run.cfg.zoo.wave_size == 0 and old.get("waves") and \
      old["config"]["zoo"].get("wave_size") == 0 and old["waves"] != run.record["waves"]:
    # "auto" chose by the free memory of the time: keep the waves the run started with
    run.waves = [tuple(w) for w in old["waves"]]
    run.record["waves"] = old["waves"]
    run.wave_note = (f"resuming with the run's own waves ({len(run.waves)} of up to "
                     f"{max(b - a for a, b in run.waves)} members)")
  diff = differences(old, run.record)
  if diff:
    raise ResumeMismatchError(
        f"{run.out_dir} holds an unfinished run of another config or data; resuming would "
        f"mix two runs. Rerun with the original config, or choose another --out.\n  "
        + "\n  ".join(diff))


def _keep_metrics_up_to(out_dir: str, wave: int, step: int) -> None:
  """Drops metrics lines logged after the checkpoint (a kill between the two)."""
  path = os.path.join(out_dir, METRICS)
  if not os.path.isfile(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip()
             and (json.loads(line).get("wave", 0), json.loads(line)["step"]) <= (wave, step)]
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


def _start(run: Run, ckpt: TrainCheckpoints) -> dict:
  """meta of a fresh run, or of the last checkpoint after checks."""
  primary = jax.process_index() == 0
  if ckpt.latest_step() is None:
    if primary:
      _start_fresh(run)
    return {"wave": 0, "step": 0, "rows": [], "shards": [], "bytes_written": 0,
            "params_from": None}
  if primary:
    _check_resume(run)
  meta = ckpt.restore_meta()
  if primary:
    _keep_metrics_up_to(run.out_dir, meta["wave"], meta["step"])
  return meta


def _payload(states, params_in_shard: bool) -> dict:
  """What a checkpoint stores: all of the training state, less the params and state
  when the shard written at this step holds them."""
  out = {"opt_state": states.opt_state, "alive": states.alive,
         "diverged_step": states.diverged_step, "loss_ref": states.loss_ref}
  if not params_in_shard:
    out.update(params=states.params, state=states.state)
  return out


def _wave_states(run: Run, ckpt: TrainCheckpoints, members: Member, w: int, meta: dict):
  """The wave's states: fresh at step 0, else restored from the checkpoint (params
  from the shard named in meta["params_from"] when the checkpoint left them out)."""
  a, b = run.waves[w]
  start = run.parents.start(run.spec.parent_index[a:b], members.task.shape[0], run.eng.mesh) \
      if run.parents else None
  states = run.eng.init(members, start)
  if meta["step"] == 0:
    return states
  shard = meta.get("params_from")
  saved, _ = ckpt.restore(abstract_like(_payload(states, shard is not None)))
  if shard is not None:
    params, state = _params_from_shard(run, shard, states, b - a)
    saved.update(params=params, state=state)
  return states.replace(**saved)


def _params_from_shard(run: Run, shard: str, fresh, n: int):
  """(params, state) of the wave: its n members from the shard, the padding members
  (which never train) as freshly initialised."""
  with store.open_shard(os.path.join(run.out_dir, shard)) as f:
    saved = {k: f.read(k) for k in f.names()}
  host = sharding.to_host({"params": fresh.params, **fresh.state})
  flat = {k: np.concatenate([saved[k], np.asarray(v)[n:]])
          for k, v in flatten_variables(host).items()}
  variables = unflatten_variables(flat)
  params = variables.pop("params", {})
  return sharding.put_members((params, variables), run.eng.mesh)


def _checkpoint(run: Run, ckpt: TrainCheckpoints, states, meta: dict) -> None:
  """Saves the wave's training state, unless the run ends here (the zoo is the result);
  at a wave's end only meta is needed (the next wave starts fresh)."""
  total, w = run.sched.total_steps, meta["wave"]
  done = meta["step"] == total
  if done and w == len(run.waves) - 1:
    return
  in_shard = meta.get("params_from") is not None and jax.process_count() == 1
  if not in_shard:
    meta["params_from"] = None
  tree = {"done": np.zeros((), np.int8)} if done else _payload(states, in_shard)
  step = w * total + meta["step"]
  meta["train_seconds"] = run.train_seconds()
  ckpt.save(step, tree, meta)
  meta["bytes_written"] += ckpt.step_bytes(step)


def _train(run: Run, meta: dict, ckpt: TrainCheckpoints, progress: bool) -> dict:
  """Runs every wave's schedule from (meta["wave"], meta["step"]): evaluations, saves,
  checkpoints."""
  sched, total = run.sched, run.sched.total_steps
  bar = tqdm(total=len(run.waves) * total, initial=meta["wave"] * total + meta["step"],
             disable=not progress, desc=f"zoo {run.m} members", unit="step")
  for w in range(meta["wave"], len(run.waves)):
    if w != meta["wave"]:
      meta.update(wave=w, step=0, params_from=None)
    elif meta["step"] == total:  # resumed at the end-of-wave checkpoint
      continue
    members = run.wave_members(w)
    n = run.waves[w][1] - run.waves[w][0]
    states = _wave_states(run, ckpt, members, w, meta)
    step = meta["step"]
    if step == 0 and 0 in sched.save_epochs:
      run.end_of_epoch(states, members, w, 0, 0, meta)
    while step < total:
      k = sched.next_chunk(step)
      states, loss_SM = run.eng.run(states, members, run.splits["train"], step, k)
      step += k
      meta.update(step=step, params_from=None)
      loss_M = np.asarray(sharding.to_host(loss_SM))[-1][:n]
      alive = np.asarray(sharding.to_host(states.alive))[:n]
      bar.update(k)
      bar.set_postfix(loss=f"{np.nanmean(loss_M):.3f}" if np.isfinite(loss_M).any() else "-",
                      alive=f"{alive.sum()}/{n}",
                      **({"wave": f"{w + 1}/{len(run.waves)}"} if len(run.waves) > 1 else {}))
      epoch, rem = divmod(step, sched.steps_per_epoch)
      if rem == 0 and epoch in sched.eval_epochs:
        run.end_of_epoch(states, members, w, epoch, step, meta)
      if (rem == 0 and epoch in sched.checkpoint_epochs) or step == total:
        _checkpoint(run, ckpt, states, meta)
    del states
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
    meta = _start(run, ckpt)  # a resume may replace the waves (and their note) by its own
    if progress or len(run.waves) > 1:
      print(f"zoo {run.m} members: {run.wave_note}", flush=True)
    run.clock = (t0, meta.get("train_seconds", 0.0))
    meta = _train(run, meta, ckpt, progress)
    ckpt.close()
    return _finish(run, meta, run.train_seconds())


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
      "waves": [list(w) for w in run.waves],
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
        **_manifest(run), "shards": meta["shards"], "train_seconds": round(seconds, 2),
        "bytes_written": int(meta.get("bytes_written", 0))})
    shutil.rmtree(os.path.join(d, TRAIN_STATE), ignore_errors=True)
    os.remove(os.path.join(d, RUN_RECORD))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("jatlas-zoo-written")
  return store.Zoo.open(d)
