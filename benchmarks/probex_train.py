"""ProbeX training speed: jatlas (the population engine) vs the same model in a plain
PyTorch loop, and a layer sweep as one population vs a sequential loop over layers.

  python benchmarks/probex_train.py [--quick] [--models 1000] [--reps 3]

Case "epoch": one ProbeX (d_H = d_W = 128, 64/64/64 probes/projection/representation,
10 classes, Adam 1e-3, batch 64) trained for one epoch over `--models` synthetic layers;
jatlas trains through `Engine.run` (jatlas.weights.fit's population), PyTorch runs
`for batch: forward, loss, backward, step` with torch.set_num_threads(os.cpu_count()).
Case "sweep": 8 same-shape layers, one ProbeX each, one epoch: jatlas's layer sweep (one
population, member m reads layer m) vs a loop training the 8 ProbeXs one after another
on the same engine. Compile time excluded; medians of --reps timed repeats. Case
"sweep first epoch": the same, timed from engine creation to the end of the first epoch
(set-up and compile included: one program vs one per layer).

One JSON line per case (ratio > 1: the first is faster):
{"name", "jatlas", "baseline", "ratio", "unit": "epochs/s", "models", "reps"}
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

D, R_U, K, BATCH, LAYERS = 128, 64, 10, 64, 8


def data(models: int, layers: int = 1, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = (rng.normal(size=(models, layers, D, D)) / np.sqrt(D)).astype(np.float32)
  return (x[:, 0] if layers == 1 else x), rng.integers(0, K, models).astype(np.int32)


def jatlas_engine(x, y, members: int, stacked: bool):
  import jax
  from jatlas.weights.fit import encoder_population
  from jatlas.weights.layer_sweep import _StackedProbeX
  from jatlas.weights.probex import ProbeX
  from jatlas.zoo import Engine, train_data
  module = ProbeX(D, D, n_out=K, n_probes=R_U, proj_dim=R_U, rep_dim=R_U)
  sample = x[:1, 0] if stacked else x[:1]
  apply = lambda p, xb, m: module.apply({"params": p}, xb)
  gather = _StackedProbeX.gather_member if stacked else None  # what layer_sweep uses
  pop = encoder_population(apply, lambda key, m: module.init(key, sample)["params"],
                           "multiclass", gather=gather)
  spe = math.ceil(len(y) / BATCH)
  eng = Engine(pop, batch_size=BATCH, steps_per_epoch=spe, member_loop=False)
  extra = {"layer": np.arange(members)} if stacked else ()
  members_ = eng.members(seed=np.arange(members), extra=extra)
  states = eng.init(members_)
  d = eng.put(train_data(x, y[None]))
  def epoch(states, e):
    states, loss = eng.run(states, members_, d, e * spe, spe)
    jax.block_until_ready(loss)
    return states
  return states, epoch


def timed(step, state, reps: int) -> tuple[float, object]:
  """(median epoch seconds, state, seconds of the first epoch: compile included)."""
  t0 = time.perf_counter()
  state = step(state, 0)  # compile
  first = time.perf_counter() - t0
  times = []
  for r in range(reps):
    t0 = time.perf_counter()
    state = step(state, r + 1)
    times.append(time.perf_counter() - t0)
  return statistics.median(times), state, first


def run_jatlas(models: int, reps: int) -> dict:
  x, y = data(models)
  s, epoch = jatlas_engine(x, y, 1, stacked=False)
  t_epoch, _, _ = timed(epoch, s, reps)
  xs, ys = data(models, LAYERS)
  t0 = time.perf_counter()
  s, epoch = jatlas_engine(xs, ys, LAYERS, stacked=True)
  t_sweep, _, _ = timed(epoch, s, reps)
  sweep_first = time.perf_counter() - t0 - reps * t_sweep  # set-up + compile + epoch 1
  t_seq, seq_first = 0.0, 0.0
  for layer in range(LAYERS):  # the loop a user writes: one ProbeX per layer
    t0 = time.perf_counter()
    s, epoch = jatlas_engine(np.ascontiguousarray(xs[:, layer]), ys, 1, stacked=False)
    t_layer, _, _ = timed(epoch, s, reps)
    t_seq += t_layer
    seq_first += time.perf_counter() - t0 - reps * t_layer  # set-up + compile + epoch 1
  return {"epoch_s": t_epoch, "sweep_s": t_sweep, "sequential_s": t_seq,
          "sweep_first_s": sweep_first, "sequential_first_s": seq_first}


def run_torch(models: int, reps: int) -> dict:
  import torch
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  x, y = data(models)
  x, y = torch.from_numpy(x), torch.from_numpy(y).long()

  class ProbeX(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.U = torch.nn.Linear(R_U, D, bias=False)   # weight [d_W, r_U]
      self.V = torch.nn.Linear(D, R_U, bias=False)
      self.M = torch.nn.Linear(R_U * R_U, R_U)
      self.head = torch.nn.Linear(R_U, K)

    def forward(self, x):
      z = (x @ self.U.weight).transpose(1, 2)        # [B, r_U, d_H]
      return self.head(self.M(torch.relu(self.V(z)).flatten(1)))

  model = ProbeX()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)

  def epoch(state, e):
    perm = torch.randperm(models)
    for i in range(0, models, BATCH):
      idx = perm[i:i + BATCH]
      opt.zero_grad()
      torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
      opt.step()
    return state
  t_epoch, _, _ = timed(epoch, None, reps)
  return {"epoch_s": t_epoch}


def main(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", type=int, default=1000)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--side", choices=("jatlas", "torch"), help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  models, reps = (64, 1) if a.quick else (a.models, a.reps)
  if a.side:
    fn = run_jatlas if a.side == "jatlas" else run_torch
    print(json.dumps(fn(models, reps)))
    return
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "1"}  # one member: no population to shard
  side = lambda s: json.loads(subprocess.run(
      [sys.executable, __file__, "--side", s, "--models", str(models), "--reps", str(reps)],
      check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
  j, t = side("jatlas"), side("torch")
  print(json.dumps({"name": "probex_epoch", "jatlas": 1 / j["epoch_s"],
                    "baseline": 1 / t["epoch_s"], "ratio": t["epoch_s"] / j["epoch_s"],
                    "unit": "epochs/s", "models": models, "reps": reps}))
  print(json.dumps({"name": "layer_sweep", "jatlas": 1 / j["sweep_s"],
                    "baseline": 1 / j["sequential_s"], "ratio": j["sequential_s"] / j["sweep_s"],
                    "unit": "sweep epochs/s", "models": models, "layers": LAYERS, "reps": reps}))
  # what a user waits for the first epoch: engine set-up and compile included
  print(json.dumps({"name": "layer_sweep_first_epoch", "jatlas": 1 / j["sweep_first_s"],
                    "baseline": 1 / j["sequential_first_s"],
                    "ratio": j["sequential_first_s"] / j["sweep_first_s"],
                    "unit": "1/s (set-up + compile + one epoch)", "models": models,
                    "layers": LAYERS}))


if __name__ == "__main__":
  main(sys.argv[1:])
