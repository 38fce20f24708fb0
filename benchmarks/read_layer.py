"""One layer from 1,000 checkpoints: jatlas.io.read_layer vs whole-file loads.

ProbeX-style learning on weights needs one weight matrix from each of many
models. Each checkpoint here is the state dict of a small ResNet (jatlas
R1111, widths 16-128: 307k params, 1.2 MB, 86 tensors, torch twin names),
written once as safetensors and once with torch.save into a temp folder. The
files are read once before timing, so every case reads from the page cache.
Baselines load each whole state dict (torch.load, safetensors.torch.load_file)
and keep the layer; a third case compares with a hand-written lazy loop over
safetensors' own safe_open.

  python benchmarks/read_layer.py            # 1,000 files, about a minute
  python benchmarks/read_layer.py --quick    # 20 files

Prints one JSON line per case: {"name", "jatlas", "baseline", "ratio", "unit"},
unit files/s (median of --repeats runs), ratio > 1 means jatlas is faster.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from jatlas import io, nets

LAYER = "block3.conv2.weight"  # (64, 64, 3, 3)


def state_dict_schema() -> dict:
  """{torch name: (shape, dtype)} of the R1111 twin's state dict."""
  net = nets.resnet_from_name("R1111", widths=(16, 32, 64, 128), num_classes=10)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32)
  shapes = jax.eval_shape(net.init, jax.random.key(0), x)
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  return {k: (v.shape, v.dtype) for k, v in
          io.to_torch(net, zeros, input_shape=(32, 32, 3)).items()}


def write_checkpoints(folder: str, n: int) -> tuple[list[str], list[str]]:
  """n safetensors files and n torch.save files with the same random tensors."""
  import torch  # baseline-only dependency
  schema, rng = state_dict_schema(), np.random.default_rng(0)
  st_paths, pt_paths = [], []
  for i in range(n):
    sd = {k: rng.standard_normal(shape, dtype=np.float32) if dtype == np.float32
          else np.zeros(shape, dtype) for k, (shape, dtype) in schema.items()}
    st_paths.append(os.path.join(folder, f"model{i:04d}.safetensors"))
    pt_paths.append(os.path.join(folder, f"model{i:04d}.pt"))
    io.save_safetensors(st_paths[-1], sd)
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, pt_paths[-1])
  return st_paths, pt_paths


def jatlas_read(st_paths, _):
  return io.read_layer(st_paths, LAYER)


def torch_load(_, pt_paths):
  import torch  # baseline-only dependency
  return np.stack([torch.load(p, weights_only=True)[LAYER].numpy() for p in pt_paths])


def safetensors_load_file(st_paths, _):
  from safetensors.torch import load_file  # baseline-only dependency
  return np.stack([load_file(p)[LAYER].numpy() for p in st_paths])


def safe_open_loop(st_paths, _):
  from safetensors import safe_open
  out = []
  for p in st_paths:
    with safe_open(p, framework="pt") as f:
      out.append(f.get_tensor(LAYER).numpy())
  return np.stack(out)


def files_per_second(fn, st_paths, pt_paths, repeats: int) -> tuple[float, np.ndarray]:
  layer = fn(st_paths, pt_paths)  # warm-up: page cache, imports
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(st_paths, pt_paths)
    times.append(time.perf_counter() - t0)
  return len(st_paths) / statistics.median(times), layer


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--files", type=int, default=1000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quick", action="store_true", help="20 files, 1 repeat")
  args = parser.parse_args(argv)
  n, repeats = (20, 1) if args.quick else (args.files, args.repeats)
  with tempfile.TemporaryDirectory(prefix="jatlas-read-layer-") as folder:
    t0 = time.perf_counter()
    st_paths, pt_paths = write_checkpoints(folder, n)
    size = os.path.getsize(st_paths[0])
    print(f"# {n} checkpoints of {size / 2**20:.2f} MiB each, written in "
          f"{time.perf_counter() - t0:.0f} s; layer {LAYER}", file=sys.stderr)
    ours, expected = files_per_second(jatlas_read, st_paths, pt_paths, repeats)
    cases = (("read_layer_vs_torch_load", torch_load),
             ("read_layer_vs_safetensors_load_file", safetensors_load_file),
             ("read_layer_vs_safe_open_loop", safe_open_loop))
    for name, baseline in cases:
      theirs, layer = files_per_second(baseline, st_paths, pt_paths, repeats)
      np.testing.assert_array_equal(layer, expected)  # same numbers, or no comparison
      print(json.dumps({"name": name, "jatlas": round(ours, 1), "baseline": round(theirs, 1),
                        "ratio": round(ours / theirs, 2), "unit": "files/s"}), flush=True)


if __name__ == "__main__":
  main()
