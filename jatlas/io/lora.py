"""PEFT LoRA adapters: factors A, B and the merged weight delta B @ A * scale.

A PEFT adapter folder holds adapter_model.safetensors, with tensors named
`base_model.model.<module>.lora_A.weight` (r, in) and `...lora_B.weight`
(out, r), and adapter_config.json with `r` and `lora_alpha`; the delta added
to `<module>.weight` (out, in) is B @ A * lora_alpha / r (or / sqrt(r) when
`use_rslora`).

Usage:
  factors = read_lora("adapter_dir")           # {module: LoraFactors}
  deltas = lora_deltas("adapter_dir")          # {module: delta (out, in)}
  kernels = lora_deltas("adapter_dir", layout="flax")  # {"params/m/kernel": (in, out)}
"""
import dataclasses
import json
import math
import os
import re

import numpy as np

from jatlas.io import safetensors_io

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
# PEFT strips the adapter name when saving; some tools keep it (".default").
_NAME = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])"
                   r"(?:\.[^.]+)?\.weight")


@dataclasses.dataclass(frozen=True)
class LoraFactors:
  """One adapted Linear: a_RI (r, in), b_OR (out, r), scale = alpha/r."""
  a_RI: np.ndarray
  b_OR: np.ndarray
  alpha: float
  r: int
  scale: float

  def delta(self) -> np.ndarray:
    """B @ A * scale, (out, in), in float32 or wider (fp16/bf16 factors)."""
    dtype = np.result_type(self.a_RI.dtype, np.float32)
    return (self.b_OR.astype(dtype) @ self.a_RI.astype(dtype)) * dtype.type(self.scale)


def _paths(source: str) -> tuple[str, str]:
  source = os.fspath(source)
  if os.path.isdir(source):
    return os.path.join(source, WEIGHTS_FILE), os.path.join(source, CONFIG_FILE)
  return source, os.path.join(os.path.dirname(source), CONFIG_FILE)


def _read_config(path: str) -> dict:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"LoRA adapter config {path} not found (needs r, lora_alpha)")
  with open(path) as f:
    config = json.load(f)
  missing = [k for k in ("r", "lora_alpha") if k not in config]
  if missing:
    raise ValueError(f"{path}: missing {missing}")
  if config.get("alpha_pattern"):
    raise ValueError(f"{path}: per-module alpha_pattern is not supported")
  return config


def _pairs(tensors: dict, path: str) -> dict[str, dict[str, np.ndarray]]:
  """{module: {"A": a, "B": b}}; every A needs its B and vice versa."""
  pairs = {}
  for name, a in tensors.items():
    if (m := _NAME.fullmatch(name)) is None:
      raise ValueError(f"{path}: {name!r} is not a LoRA factor "
                       f"(<module>.lora_A.weight / <module>.lora_B.weight)")
    pairs.setdefault(m["module"], {})[m["ab"]] = a
  unpaired = sorted(m for m, ab in pairs.items() if len(ab) != 2)
  if unpaired:
    raise ValueError(f"{path}: modules without both lora_A and lora_B: {unpaired}")
  return pairs


def read_lora(source: str) -> dict[str, LoraFactors]:
  """{module name: LoraFactors} of an adapter folder or its .safetensors file."""
  weights_path, config_path = _paths(source)
  config = _read_config(config_path)
  pairs = _pairs(safetensors_io.load_file(weights_path), weights_path)
  alpha, r_config = float(config["lora_alpha"]), int(config["r"])
  out = {}
  for module, ab in sorted(pairs.items()):
    a, b = ab["A"], ab["B"]
    r = a.shape[0]
    if a.ndim != 2 or b.ndim != 2 or b.shape[1] != r:
      raise ValueError(f"{weights_path}: {module}: lora_A {a.shape} and lora_B "
                       f"{b.shape} are not (r, in) and (out, r) Linear factors")
    if r != r_config and not config.get("rank_pattern"):
      raise ValueError(f"{weights_path}: {module} has rank {r}, but {config_path} "
                       f"says r={r_config}")
    scale = alpha / (math.sqrt(r) if config.get("use_rslora") else r)
    out[module] = LoraFactors(a, b, alpha, r, scale)
  return out


def lora_deltas(source: str, *, layout: str = "torch") -> dict[str, np.ndarray]:
  """Merged deltas: torch {module: (out, in)} or flax {"params/m/kernel": (in, out)}."""
  factors = read_lora(source)
  if layout == "torch":
    return {m: f.delta() for m, f in factors.items()}
  if layout == "flax":
    return {f"params/{m.replace('.', '/')}/kernel": f.delta().T
            for m, f in factors.items()}
  raise ValueError(f"layout must be 'torch' or 'flax', got {layout!r}")
