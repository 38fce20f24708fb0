"""Stitching-matrix speed: one model pair's matrix (every sender tap into every receiver
tap) as jatlas's population path vs a sequential loop of single stitches, in jatlas and
in plain PyTorch.

  python benchmarks/stitch_matrix.py [--smoke] [--zoo DIR] [--epochs 10]

Nets: two R1111 ResNets (widths 8-16-32-64) on 8x8 digits, taps stem and block1..4 (25
pairs); `--zoo DIR` takes members 0 and 2 of a trained zoo of that net (e.g. the
stitching experiment's runs/stitching/zoos/R1111), else random variables. Every case
trains a 1x1 stitch (strided conv / nearest upsampling + 1x1 across resolutions) per
pair, one seed, Adam, the same epochs, batch and learning rate, then scores it on the
test split; each runs in its own process and is timed from its first call to the
matrix (features, compile and evaluation included: what a user waits for).
  jatlas population   `stitch_matrix`: one program per receiver tap, sender features once
  jatlas sequential   `train_stitches` per pair: one program per pair
  torch sequential    the same loop in PyTorch: the twin ResNet (tests/torch_twins.py,
                      the same weights through `jatlas.io.to_torch`) frozen in eval mode,
                      the sender's prefix under no_grad every step, torch threads = cores

One JSON line per comparison (ratio > 1: jatlas's population path is faster):
{"name", "jatlas", "baseline", "ratio", "unit": "matrices/hour", "seconds", ...}
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
FULL = {"arch": "R1111", "widths": (8, 16, 32, 64), "n_train": None,
        "taps": ("stem", "block1", "block2", "block3", "block4")}
SMOKE = {"arch": "R1", "widths": (4,), "n_train": 256, "taps": ("stem", "block1")}


def setup(a):
  """(net, va, vb, data, taps) the same in every process."""
  from jatlas import data, nets
  from jatlas.zoo import Zoo
  sys.path.insert(0, TESTS)
  from torch_twins import random_variables
  case = SMOKE if a.smoke else FULL
  net = nets.resnet_from_name(case["arch"], widths=case["widths"], num_classes=10)
  ds = data.load("digits")
  n = case["n_train"] or len(ds.x_train)
  d = {"x": ds.x_train[:n], "y": ds.y_train[:n], "xt": ds.x_test, "yt": ds.y_test}
  if a.zoo:
    zoo = Zoo.open(a.zoo)
    final = zoo.table[zoo.table.final].index
    va, vb = zoo.variables(final[0]), zoo.variables(final[2])
  else:
    va, vb = (random_variables(net, d["x"][:1], seed) for seed in (0, 1))
  return net, va, vb, d, list(case["taps"])


def run_population(a) -> dict:
  from jatlas import stitch
  net, va, vb, d, taps = setup(a)
  t0 = time.perf_counter()
  res = stitch.stitch_matrix(net, va, net, vb, d["x"], d["y"], d["xt"], d["yt"],
                             send_taps=taps, recv_taps=taps, progress=False, seeds=(0,),
                             epochs=a.epochs, batch_size=a.batch_size, lr=a.lr)
  return {"seconds": time.perf_counter() - t0, "acc": res["accuracy"].to_numpy().tolist()}


def run_sequential(a) -> dict:
  from jatlas import stitch
  net, va, vb, d, taps = setup(a)
  t0 = time.perf_counter()
  acc = [[float(stitch.train_stitches(
      net, va, net, vb, s, r, d["x"], d["y"], x_test=d["xt"], y_test=d["yt"], seeds=(0,),
      epochs=a.epochs, batch_size=a.batch_size, lr=a.lr)["test_acc_M"][0])
          for r in taps] for s in taps]
  return {"seconds": time.perf_counter() - t0, "acc": acc}


def torch_stages(twin):
  """[(tap, fn)] of the twin ResNet, in forward order (the jatlas net's taps)."""
  import torch
  stages = [("stem", lambda h: torch.relu(twin.stem_bn(twin.stem_conv(h))))]
  stages += [(f"block{k}", getattr(twin, f"block{k}")) for k in range(1, twin.n + 1)]
  return stages + [("pool", lambda h: h.mean(dim=(2, 3))), ("logits", twin.head)]


def torch_stitch(shape_in, shape_out):
  """The adapter `jatlas.stitch.Stitch` builds, for NCHW maps (shapes are NHWC)."""
  import torch
  from jatlas.stitch import adapter
  kind, ratio = adapter(shape_in, shape_out)
  c_in, c_out = shape_in[-1], shape_out[-1]
  if kind == "down":
    return torch.nn.Conv2d(c_in, c_out, ratio, stride=ratio)
  conv = torch.nn.Conv2d(c_in, c_out, 1)
  return conv if kind == "conv" else torch.nn.Sequential(
      torch.nn.Upsample(scale_factor=ratio, mode="nearest"), conv)


def run_torch(a) -> dict:
  import torch
  from jatlas import io
  sys.path.insert(0, TESTS)
  from torch_twins import ResNet, load_numpy
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  net, va, vb, d, taps = setup(a)
  twins = []
  for v in (va, vb):
    twin = ResNet(1, net.stage_blocks, net.widths, 10)
    load_numpy(twin, io.to_torch(net, v, input_shape=d["x"].shape[1:]))
    twins.append(twin.eval().requires_grad_(False))
  nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  x, xt = nchw(d["x"]), nchw(d["xt"])
  y, yt = torch.from_numpy(d["y"]).long(), torch.from_numpy(d["yt"]).long()
  send, recv = (torch_stages(t) for t in twins)
  names = [n for n, _ in send]

  def run(stages, h, start, stop):
    for name, fn in stages[start:stop]:
      h = fn(h)
    return h
  t0 = time.perf_counter()
  acc = []
  for s in taps:
    i = names.index(s) + 1
    row = []
    for r in taps:
      j = names.index(r) + 1
      shape = lambda stages, k: tuple(np.roll(run(stages, x[:2], 0, k).shape[1:], -1))
      stitch = torch_stitch(shape(send, i), shape(recv, j))
      opt = torch.optim.Adam(stitch.parameters(), lr=a.lr)
      for _ in range(a.epochs):
        perm = torch.randperm(len(x))
        for b in range(0, len(x), a.batch_size):
          idx = perm[b:b + a.batch_size]
          with torch.no_grad():
            h = run(send, x[idx], 0, i)
          loss = torch.nn.functional.cross_entropy(run(recv, stitch(h), j, None), y[idx])
          opt.zero_grad()
          loss.backward()
          opt.step()
      with torch.no_grad():
        logits = run(recv, stitch(run(send, xt, 0, i)), j, None)
      row.append(float((logits.argmax(-1) == yt).float().mean()))
    acc.append(row)
  return {"seconds": time.perf_counter() - t0, "acc": acc}


SIDES = {"population": run_population, "sequential": run_sequential, "torch": run_torch}


def line(name, jatlas, baseline, **extra) -> str:
  return json.dumps({"name": name, "jatlas": round(3600 / jatlas["seconds"], 1),
                     "baseline": round(3600 / baseline["seconds"], 1),
                     "ratio": round(baseline["seconds"] / jatlas["seconds"], 2),
                     "unit": "matrices/hour",
                     "seconds": {"jatlas": round(jatlas["seconds"], 1),
                                 "baseline": round(baseline["seconds"], 1)}, **extra})


def main(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--smoke", action="store_true", help="a 1-stage net, 2 taps, 1 epoch")
  p.add_argument("--zoo", default="", help="a zoo of the benchmark's net (members 0, 2)")
  p.add_argument("--epochs", type=int, default=10)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--lr", type=float, default=3e-2)
  p.add_argument("--side", choices=tuple(SIDES), help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.smoke:
    a.epochs = 1
  if a.side:
    print(json.dumps(SIDES[a.side](a)))
    return
  args = [f"--epochs={a.epochs}", f"--batch_size={a.batch_size}", f"--lr={a.lr}",
          *(["--smoke"] if a.smoke else []), *([f"--zoo={a.zoo}"] if a.zoo else [])]
  # no persistent compile cache: a cached program would hide the per-pair compiles
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count()))
  side = lambda s: json.loads(subprocess.run(
      [sys.executable, __file__, "--side", s, *args], check=True, capture_output=True,
      text=True, env=env).stdout.strip().splitlines()[-1])
  pop, seq, tor = side("population"), side("sequential"), side("torch")
  pairs = len(pop["acc"]) * len(pop["acc"][0])
  # the same seeds, init and batches; float rounding differs between the two programs
  # and grows over the steps of training, so cells differ by a few test examples
  diff = np.abs(np.subtract(pop["acc"], seq["acc"]))
  same = float(diff.max())
  mean = lambda r: round(float(np.mean(r["acc"])), 4)
  common = {"pairs": pairs, "epochs": a.epochs, "batch_size": a.batch_size}
  print(line("population_vs_sequential", pop, seq, **common, max_abs_acc_diff=round(same, 4),
             mean_abs_acc_diff=round(float(diff.mean()), 4)))
  print(line("population_vs_torch_sequential", pop, tor, **common,
             mean_acc={"jatlas": mean(pop), "torch": mean(tor)}))
  print(line("sequential_vs_torch_sequential", seq, tor, **common))
  if not math.isfinite(same) or same > 0.05:
    print(f"warning: population and sequential matrices differ by {same:.3f}", file=sys.stderr)


if __name__ == "__main__":
  main(sys.argv[1:])
