"""Nested variables <-> flat `/`-joined names, the one naming used on disk.

Zoo shards, flax-layout safetensors checkpoints and the torch-name rules'
flax side name a leaf by its path joined with "/": {'params': {'conv1': {'kernel': w}}}
is {'params/conv1/kernel': w}. Empty subtrees are dropped; an already flat
dict flattens to itself.

Usage:
  flat = flatten_variables(variables)       # {"params/conv1/kernel": w, ...}
  variables = unflatten_variables(flat)     # nested dicts again
"""
from typing import Mapping

from flax import traverse_util

SEP = "/"


def flatten_variables(tree: Mapping) -> dict:
  """{'params': {'conv1': {'kernel': w}}} -> {'params/conv1/kernel': w}.

  Keys may hold "/" already (a flat or half-flat dict); two leaves that end
  up with one name raise rather than overwrite each other.
  """
  flat = traverse_util.flatten_dict(dict(tree))
  out = {SEP.join(path): leaf for path, leaf in flat.items()}
  if len(out) != len(flat):
    names = [SEP.join(path) for path in flat]
    raise ValueError(f"leaves share flat names: "
                     f"{sorted({n for n in names if names.count(n) > 1})}")
  return out


def unflatten_variables(flat: Mapping[str, object]) -> dict:
  """{'params/conv1/kernel': w} -> {'params': {'conv1': {'kernel': w}}}."""
  return traverse_util.unflatten_dict(dict(flat), sep=SEP)
