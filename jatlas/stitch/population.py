"""Many stitches trained at once: one engine population per receiver program.

A `Job` is one stitch: (sender model, sender tap) -> (receiver model, receiver tap),
with its kernel, norm and target; it trains one member per seed. What one compiled
program shares is the receiver's suffix after the receiver tap (the same net, the same
tap); everything else is data or a branch, so jobs are grouped by (receiver net,
receiver tap) alone:
  - the sender is frozen, so each (sender, tap)'s features are computed once and fed
    as data, stacked by shape; a member gathers its own source's rows;
  - the stitch is one of the group's variants (input shape, kernel, norm): params hold
    every variant, a member runs its own through `lax.switch` (a real branch when
    members loop on CPU; under vmap every variant runs and only the member's trains);
  - receivers of one net are stacked in the frozen pytree, a member indexes its own;
  - target "task" (cross-entropy through the receiver) or "mse" (the stitch fitted to
    the receiver's own representation) is a per-member `lax.cond`.
The number of programs is the number of distinct (receiver net, receiver tap), however
many model pairs, sender taps, kernels, targets and seeds. A member's init and batch
order derive from its seed alone, so a job trains exactly as it would on its own.
Features cost N x (tap size) floats per (model, tap): checked against
`max_feature_bytes` before anything is computed.

Usage:
  models = {"a": (net, va), "b": (net, vb)}
  jobs = [Job("a", "block4", "b", "stem"), Job("a", "stem", "b", "stem", kernel=3)]
  out = train_jobs(models, jobs, x, y, x_test=x_t, y_test=y_t, seeds=(0, 1))
  out[0]["test_acc_M"], out[0]["test_mse_M"], out[0]["params"]   # per job, [seeds]
"""
import dataclasses
import functools
import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jatlas.padded_batches import map_padded
from jatlas.stitch.direct import direct_match
from jatlas.stitch.layer import Stitch, adapter
from jatlas.zoo import Engine, Population, train_data

TARGETS = ("task", "mse")
FEATURE_CHUNK = 512  # examples per forward pass when computing tap features


@dataclasses.dataclass(frozen=True)
class Job:
  """One stitch (module docstring); models are named as in `train_jobs`' `models`."""
  sender: str
  send_tap: str
  receiver: str
  recv_tap: str
  kernel: int = 1
  norm: bool = False
  target: str = "task"


@functools.lru_cache(maxsize=None)
def _all_taps(net):
  """One jitted forward per net (hashable): every model of that net reuses it."""
  return jax.jit(lambda v, x: net.apply(v, x, return_taps=True)[1])


def tap_arrays(net, variables, x, taps: Sequence[str], chunk: int = FEATURE_CHUNK) -> dict:
  """{tap: np.ndarray [N, ...]}, the net run on chunks of `chunk` examples (the last one
  padded: one input shape, one compile per net)."""
  def chunk_taps(xb):
    out = _all_taps(net)(variables, xb)
    return {t: out[t] for t in taps}  # only these come to the host
  return map_padded(chunk_taps, x, chunk)


def _check(models: Mapping, jobs: Sequence[Job], init: str, epochs: int) -> None:
  problems = [f"init={init!r} (random | direct)"] if init not in ("random", "direct") else []
  if epochs < 1:
    problems.append(f"epochs={epochs} (>= 1)")
  for i, j in enumerate(jobs):
    for role, name, tap in (("sender", j.sender, j.send_tap), ("receiver", j.receiver, j.recv_tap)):
      if name not in models:
        problems.append(f"job {i}: {role} {name!r} is not in models {sorted(models)}")
      elif tap not in models[name][0].tap_names():
        problems.append(f"job {i}: {role} tap {tap!r} is not a tap of {name!r} "
                        f"({', '.join(models[name][0].tap_names())})")
    if j.target not in TARGETS:
      problems.append(f"job {i}: target={j.target!r} ({' | '.join(TARGETS)})")
    if init == "direct" and (j.kernel != 1 or j.norm):
      problems.append(f"job {i}: init='direct' fits the plain 1x1 / Dense stitch "
                      f"(kernel=1, norm=False), got kernel={j.kernel}, norm={j.norm}")
  if problems:
    raise ValueError(f"train_jobs: {len(problems)} problem(s)\n  " + "\n  ".join(problems))


def _features(models: Mapping, jobs: Sequence[Job], x, max_bytes: float) -> dict:
  """{(model, tap): [N, ...]}: every sender tap and every receiver tap of the jobs."""
  need = {}
  for j in jobs:
    need.setdefault(j.sender, set()).add(j.send_tap)
    need.setdefault(j.receiver, set()).add(j.recv_tap)
  probe = np.asarray(x[:1], np.float32)
  size = 0
  for name, taps in need.items():
    net, v = models[name]
    shapes = jax.eval_shape(lambda xb: net.apply(v, xb, return_taps=True)[1], probe)
    size += sum(math.prod(shapes[t].shape) * 4 * len(x) for t in taps)
  if size > max_bytes:
    raise ValueError(f"train_jobs: the jobs' tap features on {len(x)} examples take "
                     f"{size / 2**30:.2f} GiB > max_feature_bytes={max_bytes / 2**30:.2f} GiB; "
                     "train fewer taps or models per call, or on fewer examples")
  out = {}
  for name, taps in need.items():
    taps = sorted(taps)
    for t, a in tap_arrays(*models[name], x, taps).items():
      out[(name, t)] = a
  return out


def _normal(job: Job, in_shape, out_shape) -> Job:
  """The job with kernel 1 where the adapter ignores it (down, up, dense)."""
  kind, _ = adapter(in_shape, out_shape)
  return job if kind == "conv" else dataclasses.replace(job, kernel=1)


@dataclasses.dataclass
class _Group:
  """The jobs sharing one receiver program, and where each member finds its inputs."""
  jobs: list
  receivers: list        # receiver model names (stacked in the frozen pytree)
  sources: list          # [(model, tap)], one per distinct sender tap
  shapes: list           # distinct source shapes; data "h" holds one stack per shape
  variants: list         # [(shape index, kernel, norm)] -> one Stitch each
  out_shape: tuple


def _group(jobs: Sequence[Job], feats: dict) -> _Group:
  out_shape = feats[(jobs[0].receiver, jobs[0].recv_tap)].shape[1:]
  sources = list(dict.fromkeys((j.sender, j.send_tap) for j in jobs))
  shapes = list(dict.fromkeys(feats[s].shape[1:] for s in sources))
  variants = list(dict.fromkeys(
      (shapes.index(feats[(j.sender, j.send_tap)].shape[1:]), j.kernel, j.norm) for j in jobs))
  receivers = list(dict.fromkeys(j.receiver for j in jobs))
  return _Group(list(jobs), receivers, sources, shapes, variants, tuple(out_shape))


def _data(g: _Group, feats: dict, labels) -> object:
  """TrainData: x = {"h": one [N, S_k, ...] stack per shape, "want": [N, R, ...]}."""
  h = tuple(np.stack([feats[s] for s in g.sources if feats[s].shape[1:] == shape], 1)
            for shape in g.shapes)
  want = np.stack([feats[(r, g.jobs[0].recv_tap)] for r in g.receivers], 1)
  labels = np.asarray(labels, np.int32)[None]
  return train_data({"h": h, "want": want}, labels, labels >= 0)


def _member_extra(g: _Group, feats: dict, seeds) -> dict:
  """Per member (job-major, then seed): its variant, source index per shape, receiver."""
  rows = []
  for j in g.jobs:
    src = (j.sender, j.send_tap)
    k = g.shapes.index(feats[src].shape[1:])
    same_shape = [s for s in g.sources if feats[s].shape[1:] == g.shapes[k]]
    source_K = np.zeros(len(g.shapes), np.int32)
    source_K[k] = same_shape.index(src)
    rows.append({"variant": g.variants.index((k, j.kernel, j.norm)), "source_K": source_K,
                 "receiver": g.receivers.index(j.receiver), "mse": j.target == "mse"})
  rows = [r for r in rows for _ in seeds]
  return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def _stitches(g: _Group) -> list:
  """(Stitch, input ShapeDtypeStruct) per variant."""
  return [(Stitch(out_shape=g.out_shape, kernel=k, norm=n),
           jax.ShapeDtypeStruct((2, *g.shapes[s]), jnp.float32)) for s, k, n in g.variants]


def _population(g: _Group, receiver_net, optimizer: str) -> Population:
  recv_tap = g.jobs[0].recv_tap
  stitches = _stitches(g)
  targets = {j.target for j in g.jobs}

  def init(key, member):  # shapes only: `_start` gives every member its values
    return {"stitch": {f"v{i}": jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                                             jax.eval_shape(s.lazy_init, key, x)["params"])
                       for i, (s, x) in enumerate(stitches)}}, {}

  def gather(x, idx_B, member):
    src_K, r = member.extra["source_K"], member.extra["receiver"]
    return {"h": tuple(a[idx_B, src_K[k]] for k, a in enumerate(x["h"])),
            "want": x["want"][idx_B, r]}

  def stitched(params, h, member):
    branches = [lambda p, h, i=i, s=s, k=k: s.apply({"params": p[f"v{i}"]}, h[k])
                for i, ((s, _), (k, _, _)) in enumerate(zip(stitches, g.variants))]
    if len(branches) == 1:
      return branches[0](params["stitch"], h)
    return jax.lax.switch(member.extra["variant"], branches, params["stitch"], h)

  def receiver(params, member):
    r = 0 if len(g.receivers) == 1 else member.extra["receiver"]
    return jax.tree.map(lambda a: a[r], params["receiver"])

  def loss(params, state, batch, member):
    h = stitched(params, batch["x"]["h"], member)
    vr = receiver(params, member)
    task = lambda h: optax.softmax_cross_entropy_with_integer_labels(
        receiver_net.apply(vr, h, start=recv_tap), batch["y"]).mean()
    mse = lambda h: jnp.mean((h - batch["x"]["want"]) ** 2)
    if len(targets) == 1:
      return (mse if targets == {"mse"} else task)(h), state
    return jax.lax.cond(member.extra["mse"], mse, task, h), state

  def evaluate(params, state, batch, member):
    h = stitched(params, batch["x"]["h"], member)
    logits = receiver_net.apply(receiver(params, member), h, start=recv_tap)
    valid = batch["valid"]
    err_B = jnp.mean((h - batch["x"]["want"]) ** 2, axis=tuple(range(1, h.ndim)))
    return {"correct": ((jnp.argmax(logits, -1) == batch["y"]) & valid).sum(),
            "count": valid.sum(), "sq_err": jnp.where(valid, err_B, 0.0).sum()}

  return Population(init, loss, evaluate, optimizers=(optimizer,), gather=gather)


def _start(g: _Group, feats: dict, seeds, init: str, m_pad: int) -> tuple:
  """(params, state) of every member (padded to m_pad), made outside the engine: each
  member's own variant from its seed's key (the engine's stream 0) or by least squares,
  the others zero. Eager draws compile once per kernel shape for the whole call; drawn
  inside each group's program they would compile again for every group."""
  stitches = _stitches(g)
  zeros = [jax.tree.map(lambda a: np.zeros(a.shape, a.dtype),
                        jax.eval_shape(s.lazy_init, jax.random.key(0), x)["params"])
           for s, x in stitches]
  made, rows = {}, []
  for j in g.jobs:
    src = (j.sender, j.send_tap)
    v = g.variants.index((g.shapes.index(feats[src].shape[1:]), j.kernel, j.norm))
    for seed in seeds:
      key = (src, j.receiver) if init == "direct" else seed
      if (v, key) not in made:
        s, x = stitches[v]
        made[(v, key)] = jax.tree.map(np.asarray, direct_match(
            feats[src], feats[(j.receiver, j.recv_tap)]) if init == "direct" else s.lazy_init(
                jax.random.fold_in(jax.random.key(seed), 0), x)["params"])
      rows.append({f"v{i}": made[(v, key)] if i == v else z for i, z in enumerate(zeros)})
  rows += [rows[0]] * (m_pad - len(rows))
  return {"stitch": jax.tree.map(lambda *a: np.stack(a), *rows)}, {}


def _train_group(models, g: _Group, feats, feats_test, y, y_test, seeds, *, lr, optimizer,
                 weight_decay, epochs, batch_size, init) -> list:
  receiver_net = models[g.receivers[0]][0]
  stacked = jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]),
                         *[models[r][1] for r in g.receivers])
  n = len(y)
  bs = min(batch_size, n)
  spe = math.ceil(n / bs)
  eng = Engine(_population(g, receiver_net, optimizer), batch_size=bs, steps_per_epoch=spe,
               frozen={"receiver": stacked})
  seed_M = np.tile(np.asarray(seeds), len(g.jobs))
  members = eng.members(seed=seed_M, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                        total_steps=epochs * spe, extra=_member_extra(g, feats, seeds))
  start = _start(g, feats, seeds, init, members.task.shape[0])
  states, loss_SM = eng.run(eng.init(members, start), members, eng.put(_data(g, feats, y)), 0,
                            epochs * spe)
  m = len(seed_M)
  params = jax.tree.map(lambda a: np.asarray(a)[:m], states.params["stitch"])
  loss_M = np.asarray(loss_SM)[-1, :m]
  sums = None
  if feats_test is not None:
    sums = jax.tree.map(lambda a: np.asarray(a)[:m], eng.evaluate(
        states, members, eng.put(_data(g, feats_test, y_test))))
  variant_M = np.asarray(members.extra["variant"])[:m]
  out, s = [], len(seeds)
  for i in range(len(g.jobs)):
    at = slice(i * s, (i + 1) * s)
    res = {"params": jax.tree.map(lambda a: a[at], params[f"v{variant_M[i * s]}"]),
           "final_loss_M": loss_M[at], "seeds": list(seeds)}
    if sums is not None:
      res["test_acc_M"] = sums["correct"][at] / sums["count"][at]
      res["test_mse_M"] = sums["sq_err"][at] / sums["count"][at]
      want = feats_test[(g.jobs[i].receiver, g.jobs[i].recv_tap)]
      res["test_rel_mse_M"] = res["test_mse_M"] / max(float(want.var(0).mean()), 1e-30)
    out.append(res)
  return out


def train_jobs(models: Mapping, jobs: Sequence[Job], x, y, *, x_test=None, y_test=None,
               seeds: Sequence[int] = (0,), lr=1e-3, optimizer: str = "adam",
               weight_decay: float = 0.0, epochs: int = 30, batch_size: int = 128,
               init: str = "random", progress: bool = False,
               max_feature_bytes: float = 4 * 2**30) -> list[dict]:
  """Trains every job (module docstring) -> one dict per job, in order: "params" (the
  job's stitch, leading seed axis), "final_loss_M", "seeds" and, with test data,
  "test_acc_M", "test_mse_M" (mean squared distance to the receiver's own tap) and
  "test_rel_mse_M" (that over the tap's variance: 1 = no closer than its mean).
  models: {name: (net, variables)}; jobs whose stitch is the same train once."""
  jobs = list(jobs)
  _check(models, jobs, init, epochs)
  x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
  feats = _features(models, jobs, x, max_feature_bytes)
  bad = []
  for i, j in enumerate(jobs):
    try:
      adapter(feats[(j.sender, j.send_tap)].shape[1:], feats[(j.receiver, j.recv_tap)].shape[1:])
    except ValueError as e:
      bad.append(f"job {i} ({j.sender}:{j.send_tap} -> {j.receiver}:{j.recv_tap}): {e}")
  if bad:
    raise ValueError(f"train_jobs: {len(bad)} job(s) no stitch can join\n  " + "\n  ".join(bad))
  jobs = [_normal(j, feats[(j.sender, j.send_tap)].shape[1:],
                  feats[(j.receiver, j.recv_tap)].shape[1:]) for j in jobs]
  feats_test = None
  if x_test is not None:
    feats_test = _features(models, jobs, np.asarray(x_test, np.float32), max_feature_bytes)
  groups = {}
  for j in dict.fromkeys(jobs):  # identical stitches train once
    groups.setdefault((models[j.receiver][0], j.recv_tap), []).append(j)
  items = list(groups.values())
  if progress:
    from tqdm.auto import tqdm
    items = tqdm(items, desc="stitch programs", unit="program")
  done = {}
  for group_jobs in items:
    g = _group(group_jobs, feats)
    results = _train_group(models, g, feats, feats_test, y, y_test, seeds, lr=lr,
                           optimizer=optimizer, weight_decay=weight_decay, epochs=epochs,
                           batch_size=batch_size, init=init)
    done.update(zip(g.jobs, results))
  return [done[j] for j in jobs]
