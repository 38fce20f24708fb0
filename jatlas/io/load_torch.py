"""PyTorch checkpoints (safetensors) -> Flax variables, by the rule table.

Usage:
  variables = load_torch("model.safetensors")  # {"params": ..., "batch_stats": ...}
  variables = load_torch(path, like=jax.eval_shape(net.init, key, x))  # + schema check
  variables = load_torch(state_dict, rules=(*mha_rules(4), *TORCH_TO_FLAX))
  state_dict = to_state_dict(variables)  # the generic inverse
"""
import json
import os
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jatlas import flat_names
from jatlas.io import safetensors_io
from jatlas.io.safetensors_io import CheckpointError
from jatlas.io.strict import check_keys, shapes
from jatlas.io.torch_names import FLAX_TO_TORCH, TORCH_TO_FLAX, Rule, apply_rules

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLES = (".bin", ".pt", ".pth", ".ckpt")


def as_numpy(a) -> np.ndarray:
  """A NumPy array from a numpy, jax or torch array; dtype kept (bf16 too)."""
  if hasattr(a, "detach"):  # a torch tensor: duck-typed, jatlas never imports torch
    a = a.detach().cpu()
    if str(a.dtype) == "torch.bfloat16":  # numpy() refuses bf16; f32 holds it exactly
      return a.float().numpy().astype(jnp.bfloat16)
    return a.numpy()
  return np.asarray(a)


def _read_sharded(index_path: str) -> dict[str, np.ndarray]:
  """A sharded checkpoint: the index's weight_map names each tensor's shard."""
  try:
    with open(index_path) as f:
      weight_map = json.load(f)["weight_map"]
  except (OSError, ValueError, KeyError) as e:
    raise CheckpointError(f"{index_path} is not a sharded-checkpoint index with a "
                          f"weight_map: {e!r}") from e
  folder, out = os.path.dirname(index_path), {}
  for shard in sorted(set(weight_map.values())):
    tensors = safetensors_io.load_file(os.path.join(folder, shard))
    names = [k for k, s in weight_map.items() if s == shard]
    lost = [k for k in names if k not in tensors]
    if lost:
      raise CheckpointError(f"{os.path.join(folder, shard)} lacks {lost}, which "
                            f"{index_path} places there")
    out.update({k: tensors[k] for k in names})
  return out


def read_state_dict(source) -> tuple[dict[str, np.ndarray], str]:
  """(flat {torch name: array}, where it came from).

  `source`: a mapping of arrays, a .safetensors file, a sharded checkpoint's
  index .json, or a folder holding model.safetensors or its index.
  """
  if isinstance(source, Mapping):
    return {k: as_numpy(v) for k, v in source.items()}, "state dict"
  path = os.fspath(source)
  if os.path.isdir(path):
    for name in (SINGLE_FILE, INDEX_FILE):
      if os.path.isfile(os.path.join(path, name)):
        return read_state_dict(os.path.join(path, name))
    raise CheckpointError(f"{path} holds neither {SINGLE_FILE} nor {INDEX_FILE}")
  if path.endswith(PICKLES):
    raise CheckpointError(
        f"{path} is a pickled torch checkpoint; jatlas reads safetensors only "
        f"(convert once with safetensors.torch.save_file(torch.load(path), out))")
  if path.endswith(".json"):
    return _read_sharded(path), path
  return safetensors_io.load_file(path), path


def load_torch(source, *, strict: bool = True, like=None,
               rules: Sequence[Rule] = TORCH_TO_FLAX) -> dict:
  """A torch state dict as nested Flax variables of NumPy arrays.

  Names and layouts follow `rules` (dotted modules -> nested keys, Linear
  (out, in) -> kernel (in, out), Conv OIHW -> HWIO, BatchNorm running stats ->
  `batch_stats`); dtypes are kept. `like` (variables or a jax.eval_shape of
  `init`) is the expected schema. strict: any tensor no rule converts, and,
  with `like`, any missing or unexpected key, raises one
  StateDictMismatchError listing them all; non-strict drops the unexpected
  ones. A shape that differs from `like` always raises.
  """
  tensors, what = read_state_dict(source)
  converted = apply_rules(tensors, rules)
  flat = converted.tensors
  expected = None if like is None else shapes(flat_names.flatten_variables(like))
  check_keys(shapes(flat), expected, what=what, sources=converted.sources,
             unmatched=converted.unmatched if strict else (),
             allow_missing=not strict, allow_unexpected=not strict)
  if expected is not None:
    flat = {k: v for k, v in flat.items() if k in expected}
  return flat_names.unflatten_variables(flat)


def to_state_dict(variables, *,
                  rules: Sequence[Rule] = FLAX_TO_TORCH) -> dict[str, np.ndarray]:
  """Flax variables -> {torch name: array}, the generic inverse of load_torch.

  No net-specific layouts (flatten order, Conv1d as (1, k) Conv2D): use
  adapters.to_torch for jatlas nets. Raises on leaves no rule converts.
  """
  flat = {k: as_numpy(v) for k, v in flat_names.flatten_variables(variables).items()}
  converted = apply_rules(flat, rules)
  check_keys(shapes(converted.tensors), what="variables", unmatched=converted.unmatched)
  return converted.tensors
