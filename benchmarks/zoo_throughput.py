"""Population training throughput: jatlas (one compiled population program) vs a PyTorch loop over models.

  python benchmarks/zoo_throughput.py [--quick] [--cases lenet5_64,mlp_1024] [--reps 3]

Same architecture, batch size, optimizer (Adam 1e-3, one-vs-rest labels for LeNet-5 on
digits upscaled to 32x32; 10-class digits 8x8 for the MLP) and number of steps on both
sides. jatlas trains through `Engine.run` (the library path) with the population sharded
over one CPU device per core (JAX_NUM_CPU_DEVICES = os.cpu_count() unless set); PyTorch
runs `for model: for step: forward, loss, backward, optimizer.step()` with
torch.set_num_threads(os.cpu_count()). Each side runs in its own process (JAX's idle
threads slow a PyTorch loop in the same process), compile time is excluded from the rates
and reported apart, and rates are medians over --reps timed repeats.

One JSON line per case on stdout (ratio > 1 means jatlas is faster):
{"name", "jatlas", "baseline", "ratio", "unit": "member-steps/s", "gflops", "peak_gflops",
 "peak_fraction", "members", "batch", "steps", "compile_s", "devices"}
FLOPs are counted analytically (printed on stderr): forward multiply-adds per example from
the layer shapes, x 2 FLOPs per multiply-add, x 3 for forward + backward, x batch.
`peak_gflops` is a 2048x2048 float32 JAX matmul measured in the same run (median of repeats).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

CASES = {  # name: net, members, batch, steps per timed repeat
    "lenet5_64": dict(net="lenet5", members=64, batch=32, steps=20),
    # all members see the same batches (Engine(shared_order=True)); labels, init differ
    "lenet5_64_shared_order": dict(net="lenet5", members=64, batch=32, steps=20, shared=True),
    "lenet5_256": dict(net="lenet5", members=256, batch=32, steps=10),
    # the main job's zoo step (configs/hypernet_digits.py, zoo_end_to_end.py): batch 128
    "lenet5_100_b128": dict(net="lenet5", members=100, batch=128, steps=5),
    "mlp_1024": dict(net="mlp", members=1024, batch=64, steps=100),
}
QUICK = {  # smoke sizes for --quick
    "lenet5_64": dict(members=4, steps=2),
    "lenet5_64_shared_order": dict(members=4, steps=2),
    "lenet5_256": dict(members=8, steps=2),
    "lenet5_100_b128": dict(members=4, steps=2),
    "mlp_1024": dict(members=16, steps=5),
}


def case_config(name: str, quick: bool) -> dict:
  if name not in CASES:
    raise SystemExit(f"unknown case {name!r}; known: {', '.join(CASES)}")
  cfg = {**CASES[name], **(QUICK[name] if quick else {})}
  devices = int(os.environ.get("JAX_NUM_CPU_DEVICES", os.cpu_count()))
  cfg["members"] = -(-cfg["members"] // devices) * devices  # whole members per device
  return cfg


def load_task(net: str):
  """(x_train NHWC float32, labels_TN int32, num_classes): LeNet-5 gets digits at 32x32
  with the 10 one-vs-rest tasks; the MLP gets 8x8 digits with their 10 classes."""
  from jatlas import data
  if net == "lenet5":
    ds = data.load_digits(size=32)
    return ds.x_train, np.asarray(data.one_vs_rest(ds).labels["train"], np.int32), 2
  ds = data.load_digits(size=8)
  return ds.x_train, ds.y_train[None].astype(np.int32), 10


def build_net(net: str, num_classes: int):
  from jatlas import nets
  if net == "mlp":
    return nets.MLP(hidden=(32,), num_classes=num_classes)
  return nets.LeNet5(num_classes=num_classes)


def forward_macs(model, x_1HWC) -> list:
  """[(layer, multiply-adds per example)] from the parameter and layer-output shapes."""
  import jax
  variables = jax.eval_shape(model.init, jax.random.key(0), x_1HWC)
  _, taps = jax.eval_shape(lambda v: model.apply(v, x_1HWC, return_taps=True), variables)
  rows = []
  for layer, p in variables["params"].items():
    out = taps["logits" if layer == "head" else layer]
    rows.append((layer, int(np.prod(out.shape[1:-1])) * int(np.prod(p["kernel"].shape))))
  return rows


def _timed(fn, reps: int) -> float:
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


# ------------------------------------------------------------------ sides

def side_peak(reps: int = 7) -> dict:
  import jax
  import jax.numpy as jnp
  n = 2048
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  return {"peak_gflops": 2 * n**3 / _timed(lambda: f(a).block_until_ready(), reps) / 1e9}


def side_jatlas(cfg: dict, reps: int) -> dict:
  import jax
  import jax.numpy as jnp
  from jatlas.zoo import Engine, classifier, labels_data

  x, labels_TN, num_classes = load_task(cfg["net"])
  net = build_net(cfg["net"], num_classes)
  m, batch, steps = cfg["members"], cfg["batch"], cfg["steps"]
  shared = cfg.get("shared", False)
  eng = Engine(classifier(net, x[:1]), batch_size=batch, steps_per_epoch=len(x) // batch,
               shared_order=shared, order_seed=1)
  members = eng.members(seed=np.arange(m), task=np.arange(m) % len(labels_TN), lr=1e-3)
  data = eng.put(labels_data(x, labels_TN))
  state = {"s": eng.init(members), "start": 0}

  def run():
    state["s"], loss = eng.run(state["s"], members, data, state["start"], steps)
    state["start"] += steps
    jax.block_until_ready(loss)
    return loss

  t = time.perf_counter()
  loss = run()  # compile + first run
  first = time.perf_counter() - t
  dt = _timed(run, reps)
  return {"rate": m * steps / dt, "compile_s": max(0.0, first - dt),
          "devices": jax.device_count(), "loss": float(jnp.nanmean(loss)),
          "macs": forward_macs(net, jnp.asarray(x[:1]))}


def side_torch(cfg: dict, reps: int) -> dict:
  import torch  # a benchmark-only dependency
  from torch import nn

  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  x, labels_TN, num_classes = load_task(cfg["net"])
  m, batch, steps = cfg["members"], cfg["batch"], cfg["steps"]
  x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW
  labels = [torch.from_numpy(labels_TN[k % len(labels_TN)].astype(np.int64)) for k in range(m)]

  def make():
    if cfg["net"] == "mlp":
      return nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 32), nn.ReLU(),
                           nn.Linear(32, num_classes))
    return nn.Sequential(  # LeNet-5 as jatlas.nets.LeNet5
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(),
        nn.Flatten(), nn.Linear(480, 84), nn.Tanh(), nn.Linear(84, num_classes))

  models = [make() for _ in range(m)]
  opts = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in models]
  gen = torch.Generator().manual_seed(0)

  def train(n_steps):  # what a user would otherwise write
    for model, opt, y in zip(models, opts, labels):
      for _ in range(n_steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

  train(1)  # warm-up: allocator, optimizer state
  rate = m * steps / _timed(lambda: train(steps), reps)
  return {"rate": rate, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ driver

def _run_side(side: str, case: str, args) -> dict:
  env = dict(os.environ)
  if side == "jatlas":  # one CPU device per core: each runs its own members, single-threaded ops
    env.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count()))
  cmd = [sys.executable, __file__, "--side", side, "--cases", case, "--reps", str(args.reps)]
  cmd += ["--quick"] if args.quick else []
  out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or "unknown"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny populations, a few steps (smoke run)")
  parser.add_argument("--cases", default=",".join(CASES),
                      help="comma-separated: " + ",".join(CASES))
  parser.add_argument("--reps", type=int, default=3, help="timed repeats per side (median)")
  parser.add_argument("--side", choices=("jatlas", "torch", "peak"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  cases = args.cases.split(",")
  if args.side == "peak":
    print(json.dumps(side_peak()))
    return
  if args.side:
    cfg = case_config(cases[0], args.quick)
    print(json.dumps((side_jatlas if args.side == "jatlas" else side_torch)(cfg, args.reps)))
    return

  for case in cases:
    case_config(case, args.quick)  # fail early on a bad name
  print(f"# machine: {os.cpu_count()} cores, {cpu_model()}, python {platform.python_version()}",
        file=sys.stderr)
  peak = _run_side("peak", "", args)["peak_gflops"]
  print(f"# peak: 2048x2048 f32 JAX matmul {peak:.1f} GFLOP/s", file=sys.stderr)
  for case in cases:
    cfg = case_config(case, args.quick)
    j = _run_side("jatlas", case, args)
    base = _run_side("torch", case, args)["rate"]
    macs = sum(n for _, n in j["macs"])
    flop = 6 * macs * cfg["batch"]
    gflops = j["rate"] * flop / 1e9
    layers = ", ".join(f"{layer} {n:,}" for layer, n in j["macs"])
    print(f"# {case}: forward multiply-adds per example {macs:,} ({layers}); "
          f"FLOP per member-step = 2 x 3 x {macs:,} x batch {cfg['batch']} = {flop / 1e6:.1f} M; "
          f"jatlas on {j['devices']} devices, compile {j['compile_s']:.1f} s, loss {j['loss']:.3f}",
          file=sys.stderr)
    print(json.dumps({
        "name": case, "jatlas": round(j["rate"], 1), "baseline": round(base, 1),
        "ratio": round(j["rate"] / base, 2), "unit": "member-steps/s", "gflops": round(gflops, 2),
        "peak_gflops": round(peak, 1), "peak_fraction": round(gflops / peak, 4),
        "members": cfg["members"], "batch": cfg["batch"], "steps": cfg["steps"],
        "compile_s": round(j["compile_s"], 1), "devices": j["devices"]}), flush=True)


if __name__ == "__main__":
  main()
