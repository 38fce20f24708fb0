"""Where one LeNet-5 member-step spends its time on CPU (the profile behind benchmarks/README.md).

  JAX_NUM_CPU_DEVICES=1 taskset -c 0 python benchmarks/profile_member_step.py [--steps 50] [--top 25]
      [--batch 32]

Runs one member through the engine's own training scan (`Engine.train_member`, what
the CPU member loop runs per member; LeNet-5 32x32, batch 32 (--batch), Adam, the zoo_throughput
task) for --steps steps, first timed without tracing, then under
`jax.profiler`. Each instant of traced wall time is split equally among the XLA thunks
running then, so the shares add up to the wall time even when thunks overlap (a trace
with two devices, or an op that waits for a pool thread, inflates per-thunk durations:
summed, they exceed the wall time). Thunks are named by the JAX op that made them (the
HLO metadata), grouped by layer. Pin to one core: with one XLA thread the shares are
the ops' own times.

Prints the untraced ms per member-step, then one row per thunk and per layer group.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
import zoo_throughput as zt  # noqa: E402  (same task, net and data)

from jatlas.zoo import Engine, classifier, labels_data, sharding  # noqa: E402


def build_steps(n_steps: int, batch: int):
  """(jitted n-step training of one member, as the engine's member loop runs it; its state)."""
  x, labels_TN, num_classes = zt.load_task("lenet5")
  net = zt.build_net("lenet5", num_classes)
  eng = Engine(classifier(net, x[:1]), batch_size=batch, steps_per_epoch=len(x) // batch,
               mesh=sharding.population_mesh(jax.devices()[:1]))
  member = jax.tree.map(lambda a: a[0], eng.members(seed=[0], lr=1e-3))
  data = jax.device_put(labels_data(x, labels_TN))
  steps = jax.jit(lambda state: eng.train_member(state, member, data, jnp.int32(0), n_steps)[0])
  return steps, eng.init_member(member)


def op_names(compiled_hlo: str) -> dict:
  """{instruction name: JAX op_name} from the optimized HLO's metadata."""
  pat = re.compile(r"%([\w.\-]+) = .*?op_name=\"([^\"]+)\"")
  return {m.group(1): m.group(2) for m in pat.finditer(compiled_hlo)}


def leaf_thunks(trace_dir: str) -> list:
  """Complete ('X') trace events of XLA thunks, without their enclosing loops/calls."""
  path = sorted(glob.glob(f"{trace_dir}/**/*.json.gz", recursive=True))[-1]
  events = [e for e in json.load(gzip.open(path))["traceEvents"] if e.get("ph") == "X"]
  skip = ("$", "end:", "while", "call", "Execute", "Await", "Handle", "Parse", "Allocate")
  events = [e for e in events if not e["name"].startswith(skip) and "Execute" not in e["name"]]
  by_thread = collections.defaultdict(list)
  for e in events:
    by_thread[e["pid"], e["tid"]].append(e)
  leaves = []
  for evs in by_thread.values():
    evs.sort(key=lambda e: (e["ts"], -e["dur"]))
    for e, nxt in zip(evs, evs[1:] + [None]):
      if not (nxt and e["ts"] <= nxt["ts"] < e["ts"] + e["dur"]):
        leaves.append(e)
  return leaves


def wall_shares(leaves: list) -> collections.Counter:
  """{thunk: us of wall time}, each instant split equally among the thunks running."""
  points = sorted([(e["ts"], 1, e["name"]) for e in leaves] +
                  [(e["ts"] + e["dur"], -1, e["name"]) for e in leaves])
  active, share, last = collections.Counter(), collections.Counter(), None
  for t, delta, name in points:
    if last is not None and t > last and active:
      k = sum(active.values())
      for running, count in active.items():
        share[running] += (t - last) * count / k
    active[name] += delta
    if not active[name]:
      del active[name]
    last = t
  return share


LAYERS = ("conv1", "conv2", "conv3", "fc1", "head")  # LeNet5's parameter scopes


def layer_of(op_name: str) -> str:
  """'conv2 backward' etc. from 'jit(steps)/.../transpose(jvp(LeNet5))/conv2/...'."""
  m = re.search(r"LeNet5\)*/(\w+)", op_name)
  if m is None:
    return "optimizer, batch, loss" if op_name else "other (copies, broadcasts)"
  where = m.group(1) if m.group(1) in LAYERS else "tanh, pooling"
  return f"{where} {'backward' if 'transpose(' in op_name else 'forward'}"


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=50)
  ap.add_argument("--batch", type=int, default=32, help="128: the main job's zoo")
  ap.add_argument("--top", type=int, default=25)
  args = ap.parse_args()
  steps, state = build_steps(args.steps, args.batch)
  jax.block_until_ready(steps(state))
  t = time.perf_counter()
  jax.block_until_ready(steps(state))
  print(f"untraced: {(time.perf_counter() - t) / args.steps * 1e3:.3f} ms per member-step "
        f"({jax.device_count()} device(s), {len(os.sched_getaffinity(0))} core(s) allowed)")
  names = op_names(steps.lower(state).compile().as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    jax.block_until_ready(steps(state))
    jax.profiler.stop_trace()
    share = wall_shares(leaf_thunks(trace_dir))
  per_step = lambda us: us / 1e3 / args.steps
  print(f"traced: {per_step(sum(share.values())):.3f} ms per member-step in thunks")
  print(f"{'ms/step':>8}  thunk  <- JAX op")
  for thunk, us in share.most_common(args.top):
    op = names.get(thunk, "").split("/", 1)[-1]
    print(f"{per_step(us):8.3f}  {thunk}  <- {op[-90:]}")
  groups = collections.Counter()
  for thunk, us in share.items():
    groups[layer_of(names.get(thunk, ""))] += us
  print(f"\n{'ms/step':>8}  layer")
  for layer, us in groups.most_common():
    print(f"{per_step(us):8.3f}  {layer}")


if __name__ == "__main__":
  main()
