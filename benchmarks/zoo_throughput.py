"""Population training throughput: jatlas (one vmapped program) vs a PyTorch loop over models.

  python benchmarks/zoo_throughput.py [--quick] [--cases lenet5_64,mlp_1024]

Same architecture, batch size, optimizer (Adam 1e-3) and number of steps on both sides;
compile time excluded (reported apart). One JSON line per case:
{"name", "jatlas", "baseline", "ratio", "unit": "member-steps/s", "gflops", "peak_gflops",
 "peak_fraction", ...}; ratio > 1 means jatlas is faster. FLOPs are counted analytically:
forward multiply-adds x 2, times 3 for forward + backward.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jatlas import data, nets
from jatlas.zoo import sharding
from jatlas.zoo.engine import Engine
from jatlas.zoo.step import MemberHparams, StepConfig, device_data

CASES = {  # name: (net, image size, members, batch, steps)
    "lenet5_64": ("lenet5", 32, 64, 32, 20),
    "lenet5_64_shared_order": ("lenet5", 32, 64, 32, 20),  # zoo.shared_order=True
    "lenet5_256": ("lenet5", 32, 256, 32, 10),
    "mlp_1024": ("mlp", 8, 1024, 64, 200),
}


def peak_gflops(n=2048, reps=5) -> float:
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n**3 / np.median(times) / 1e9


def forward_macs(net, x_1HWC) -> int:
  """Multiply-adds of one example's forward pass, from the net's layer shapes."""
  _, taps = jax.eval_shape(lambda v: net.apply(v, x_1HWC, return_taps=True),
                           jax.eval_shape(net.init, jax.random.key(0), x_1HWC))
  variables = jax.eval_shape(net.init, jax.random.key(0), x_1HWC)["params"]
  macs = 0
  for name, p in variables.items():
    k = p["kernel"].shape
    out = taps["logits"] if name == "head" else taps[name]
    macs += int(np.prod(out.shape[1:-1])) * int(np.prod(k))  # per output position
  return macs


def _setup(case):
  name, size, m, batch, steps = CASES[case]
  ds = data.load_digits(size=size)
  tasks = data.one_vs_rest(ds)
  net = nets.build(name, num_classes=2, **({"hidden": (32,)} if name == "mlp" else {}))
  return net, ds, tasks, m, batch, steps


def jatlas_rate(case, steps_override=None):
  net, ds, tasks, m, batch, steps = _setup(case)
  steps = steps_override or steps
  cfg = StepConfig(apply_fn=net.apply, optimizers=("adam",), batch_size=batch,
                   steps_per_epoch=len(ds.x_train) // batch, has_batch_stats=False,
                   full_tasks=True)
  mesh = sharding.population_mesh()
  shared = case.endswith("shared_order")  # all members see the same batches
  eng = Engine(cfg, net, ds.x_train[:1], mesh, shared_order=shared)
  keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in range(m)])
  hp = sharding.put_members(MemberHparams(
      key=keys, task=(np.arange(m) % 10).astype(np.int32), lr=np.full(m, 1e-3, np.float32),
      weight_decay=np.zeros(m, np.float32), optimizer=np.zeros(m, np.int32),
      init_scale=np.ones(m, np.float32), total_steps=np.full(m, 10**6, np.int32)), mesh)
  d = sharding.put_replicated(device_data(ds.x_train, tasks.labels["train"]), mesh)
  order = jax.random.key(1) if shared else jax.vmap(
      lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), 1))(hp.key)
  states = eng.init(hp)
  t = time.perf_counter()
  states, loss = eng.run(states, hp, order, d, 0, steps)
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  states, loss = eng.run(states, hp, order, d, steps, steps)
  jax.block_until_ready(loss)
  return m * steps / (time.perf_counter() - t), compile_s, net, ds


def torch_rate(case, steps_override=None):
  import torch  # a benchmark-only dependency
  from torch import nn
  name, size, m, batch, steps = CASES[case]
  steps = steps_override or steps
  torch.set_num_threads(os.cpu_count())
  ds = data.load_digits(size=size)
  x = torch.from_numpy(np.ascontiguousarray(ds.x_train.transpose(0, 3, 1, 2)))
  def make():
    if name == "mlp":
      return nn.Sequential(nn.Flatten(), nn.Linear(size * size, 32), nn.ReLU(), nn.Linear(32, 2))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(),
        nn.Flatten(), nn.Linear(480, 84), nn.Tanh(), nn.Linear(84, 2))
  models = [make() for _ in range(m)]
  opts = [torch.optim.Adam(mod.parameters(), 1e-3) for mod in models]
  y = [torch.from_numpy((ds.y_train == k % 10).astype(np.int64)) for k in range(m)]
  gen = torch.Generator().manual_seed(0)
  def train(n_steps):
    for k, (mod, opt) in enumerate(zip(models, opts)):  # what a user would write
      for _ in range(n_steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = nn.functional.cross_entropy(mod(x[idx]), y[k][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
  train(1)  # warm-up
  t = time.perf_counter()
  train(steps)
  return m * steps / (time.perf_counter() - t)


def _side(side: str, case: str, steps) -> dict:
  """Runs one side in a fresh process: JAX's idle CPU threads slow a PyTorch loop in the
  same process by more than 10x, which would flatter jatlas."""
  cmd = [sys.executable, __file__, "--side", side, "--cases", case]
  cmd += ["--steps", str(steps)] if steps else []
  out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="3 steps per case (smoke run)")
  parser.add_argument("--cases", default=",".join(CASES))
  parser.add_argument("--side", choices=("jatlas", "torch", "peak"), help=argparse.SUPPRESS)
  parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.side == "torch":
    print(json.dumps({"rate": torch_rate(args.cases, args.steps)}))
    return
  if args.side == "peak":
    print(json.dumps({"peak": peak_gflops()}))
    return
  if args.side == "jatlas":
    rate, compile_s, net, ds = jatlas_rate(args.cases, args.steps)
    macs = forward_macs(net, jnp.asarray(ds.x_train[:1]))
    print(json.dumps({"rate": rate, "compile_s": compile_s, "macs": macs}))
    return
  steps = 3 if args.quick else None
  peak = _side("peak", "", None)["peak"]
  for case in args.cases.split(","):
    j = _side("jatlas", case, steps)
    rate, compile_s = j["rate"], j["compile_s"]
    base = _side("torch", case, steps)["rate"]
    flop_per_step = 6 * j["macs"] * CASES[case][3]
    gflops = rate * flop_per_step / 1e9
    print(json.dumps({
        "name": case, "jatlas": round(rate, 1), "baseline": round(base, 1),
        "ratio": round(rate / base, 2), "unit": "member-steps/s", "gflops": round(gflops, 2),
        "peak_gflops": round(peak, 1), "peak_fraction": round(gflops / peak, 4),
        "members": CASES[case][2], "batch": CASES[case][3], "compile_s": round(compile_s, 1),
        "devices": jax.device_count(), "cpu_count": os.cpu_count()}), flush=True)


if __name__ == "__main__":
  main()
