"""A whole zoo run: `jatlas zoo train` as a process vs the PyTorch script a user would write.

  python benchmarks/zoo_end_to_end.py [--quick] [--cases end_to_end,memory]
      [--members 100] [--epochs 5] [--memory-members 1000,4000]

end_to_end: the main job's zoo (configs/hypernet_digits.py: one-vs-rest LeNet-5 on
digits at 32x32, Adam 1e-3, batch 128) with --members members trained --epochs
epochs, evaluated on train/val/test at epochs 0, 1 and the last, and every member's
weights saved at those epochs. Both sides are whole processes timed from launch to
exit (imports, start-up, compilation, training, evaluation, writing): jatlas as
`jatlas zoo train`, PyTorch as this file's `--side torch` (models one after another,
torch.set_num_threads(os.cpu_count()), a state dict per member and save epoch, a CSV
of metrics). Ratio = PyTorch wall / jatlas wall.

memory: peak resident memory of `jatlas zoo train` (one epoch, shards at epochs 0 and
1, default settings: the wave size is chosen from free memory) at each of
--memory-members; ratio = the largest run's peak / the smallest's (the goal: <= 1.5).

One JSON line per case on stdout; peak RSS is each child's own (os.wait4).
Run on a quiet machine: a busy neighbour slows the PyTorch loop far more than jatlas.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from zoo_throughput import cpu_model  # same directory: benchmarks run as scripts

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                      "hypernet_digits.py")
BATCH, LR = 128, 1e-3


def _run_measured(cmd: list) -> dict:
  """cmd as a child whose own peak RSS is read from os.wait4 -> wall_s, peak_rss_gb, stdout."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    if proc.returncode:
      raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()[-3000:]}")
    return {"wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / 2**30,
            "stdout": out.read()}


def jatlas_cmd(out_dir: str, members: int, epochs: int, save_epochs: tuple) -> list:
  return [sys.executable, "-c", "import sys; from jatlas.cli import main; main(sys.argv[1:])",
          "zoo", "train", "--config", CONFIG, "--out", out_dir, "--no-progress",
          f"--config.zoo.members={members}", f"--config.zoo.epochs=({epochs},)",
          f"--config.zoo.save_epochs={tuple(save_epochs)}"]


def save_epochs_of(epochs: int) -> tuple:
  return tuple(sorted({0, 1, epochs}))


# ------------------------------------------------------------------ the PyTorch script

def torch_lenet5():
  """LeNet-5 as jatlas.nets.LeNet5(activation="tanh") on 1x32x32 inputs, 2 classes."""
  from torch import nn
  return nn.Sequential(
      nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
      nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(),
      nn.Flatten(), nn.Linear(480, 84), nn.Tanh(), nn.Linear(84, 2))


def side_torch(members: int, epochs: int, out_dir: str) -> dict:
  """What a user would otherwise write: each member trained, evaluated and saved in turn."""
  import torch  # a benchmark-only dependency
  from torch import nn

  from jatlas import data  # NumPy only: the same digits and one-vs-rest labels

  torch.set_num_threads(os.cpu_count())
  ds = data.load_digits(size=32)
  tasks = data.one_vs_rest(ds)
  splits = {s: torch.from_numpy(np.ascontiguousarray(ds.split(s)[0].transpose(0, 3, 1, 2)))
            for s in data.SPLITS}  # NCHW
  labels = {s: torch.from_numpy(tasks.labels[s].astype(np.int64)) for s in data.SPLITS}
  n_train = len(splits["train"])
  steps_per_epoch = -(-n_train // BATCH)
  save = save_epochs_of(epochs)

  @torch.no_grad()
  def evaluate(model, t):
    row = {}
    for s, x in splits.items():
      logits = torch.cat([model(x[i:i + 512]) for i in range(0, len(x), 512)])
      y = labels[s][t]
      pred = logits.argmax(1)
      recall = [(pred[y == c] == c).float().mean() for c in (0, 1) if (y == c).any()]
      row.update({f"{s}_loss": nn.functional.cross_entropy(logits, y).item(),
                  f"{s}_acc": (pred == y).float().mean().item(),
                  f"{s}_bacc": torch.stack(recall).mean().item()})
    return row

  rows, t_train, t_eval, t_save = [], 0.0, 0.0, 0.0
  for i in range(members):
    t_task = i % len(tasks.names)
    torch.manual_seed(i)
    model = torch_lenet5()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = splits["train"], labels["train"][t_task]
    for epoch in range(epochs + 1):
      if epoch in save:
        t = time.perf_counter()
        rows.append({"member": i, "task": t_task, "epoch": epoch, **evaluate(model, t_task)})
        t_eval += time.perf_counter() - t
        t = time.perf_counter()
        torch.save(model.state_dict(), os.path.join(out_dir, f"member{i:05d}-e{epoch:04d}.pt"))
        t_save += time.perf_counter() - t
      if epoch == epochs:
        break
      t = time.perf_counter()
      order = torch.randperm(n_train).repeat(2)  # full batches, as jatlas draws them
      for b in range(steps_per_epoch):
        idx = order[b * BATCH:(b + 1) * BATCH]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
      t_train += time.perf_counter() - t
  import pandas as pd
  pd.DataFrame(rows).to_csv(os.path.join(out_dir, "metrics.csv"), index=False)
  last = [r["test_acc"] for r in rows if r["epoch"] == epochs]
  return {"train_s": t_train, "eval_s": t_eval, "save_s": t_save,
          "test_acc": float(np.mean(last)),
          "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ cases

def _open_zoo(zoo_dir: str):
  from jatlas.zoo import store  # here, not at the top: the PyTorch side runs this file too
  return store.Zoo.open(zoo_dir)


def case_end_to_end(members: int, epochs: int, work: str) -> dict:
  j_dir, t_dir = os.path.join(work, "jatlas"), os.path.join(work, "torch")
  os.makedirs(t_dir)
  j = _run_measured(jatlas_cmd(j_dir, members, epochs, save_epochs_of(epochs)))
  zoo = _open_zoo(j_dir)
  manifest, table = zoo.manifest, zoo.table
  t = _run_measured([sys.executable, __file__, "--side", "torch", "--members", str(members),
                     "--epochs", str(epochs), "--out", t_dir])
  torch_info = json.loads(t["stdout"].strip().splitlines()[-1])
  return {"name": f"end_to_end_{members}x{epochs}", "jatlas": round(j["wall_s"], 1),
          "baseline": round(t["wall_s"], 1), "ratio": round(t["wall_s"] / j["wall_s"], 2),
          "unit": "s (whole process)", "members": members, "epochs": epochs,
          "jatlas_train_s": manifest["train_seconds"],
          "jatlas_startup_s": round(j["wall_s"] - manifest["train_seconds"], 1),
          "jatlas_peak_rss_gb": round(j["peak_rss_gb"], 2),
          "jatlas_test_acc": round(float(table[table.epoch == epochs].test_acc.mean()), 4),
          "torch_train_s": round(torch_info["train_s"], 1),
          "torch_eval_s": round(torch_info["eval_s"], 1),
          "torch_save_s": round(torch_info["save_s"], 1),
          "torch_peak_rss_gb": round(t["peak_rss_gb"], 2),
          "torch_test_acc": round(torch_info["test_acc"], 4),
          "torch_threads": torch_info["threads"]}


def case_memory(sizes: list, work: str) -> dict:
  peaks, walls, note = {}, {}, {}
  for m in sizes:
    d = os.path.join(work, f"zoo{m}")
    r = _run_measured(jatlas_cmd(d, m, 1, (0, 1)))
    manifest = _open_zoo(d).manifest  # a zoo written in waves opens like any other
    peaks[m], walls[m] = r["peak_rss_gb"], r["wall_s"]
    note[m] = {"waves": len(manifest["waves"]), "bytes_written_gb":
               round(manifest["bytes_written"] / 2**30, 3)}
    shutil.rmtree(d)
    print(f"# memory {m} members: peak {peaks[m]:.2f} GB, {walls[m]:.0f} s, {note[m]}",
          file=sys.stderr, flush=True)
  lo, hi = min(sizes), max(sizes)
  return {"name": f"peak_memory_{hi}_vs_{lo}", "jatlas": round(peaks[hi], 2),
          "baseline": round(peaks[lo], 2), "ratio": round(peaks[hi] / peaks[lo], 2),
          "unit": "GB peak RSS (ratio: larger zoo / smaller; goal <= 1.5)",
          "peak_rss_gb": {str(m): round(p, 2) for m, p in peaks.items()},
          "wall_s": {str(m): round(w, 1) for m, w in walls.items()},
          "runs": {str(m): v for m, v in note.items()}}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny zoos (smoke run)")
  parser.add_argument("--cases", default="end_to_end,memory")
  parser.add_argument("--members", type=int, default=100)
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--memory-members", default="1000,4000")
  parser.add_argument("--side", choices=("torch",), help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.side:
    print(json.dumps(side_torch(args.members, args.epochs, args.out)))
    return
  cases = args.cases.split(",")
  unknown = sorted(set(cases) - {"end_to_end", "memory"})
  if unknown:
    raise SystemExit(f"unknown case(s) {unknown}; known: end_to_end, memory")
  members, epochs = (4, 1) if args.quick else (args.members, args.epochs)
  sizes = [4, 8] if args.quick else [int(s) for s in args.memory_members.split(",")]
  print(f"# machine: {os.cpu_count()} cores, {cpu_model()}, python {platform.python_version()}",
        file=sys.stderr)
  with tempfile.TemporaryDirectory(prefix="jatlas-e2e-") as work:
    if "end_to_end" in cases:
      print(json.dumps(case_end_to_end(members, epochs, os.path.join(work, "e2e"))), flush=True)
    if "memory" in cases:
      print(json.dumps(case_memory(sizes, os.path.join(work, "mem"))), flush=True)


if __name__ == "__main__":
  main()
