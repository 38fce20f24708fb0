"""Layer sweep: one ProbeX per layer, trained as one population, best layer on validation.

Layers whose matrices (jatlas.weights.inputs.layer_matrix) have the same shape train
as ONE population on the engine: each member reads its own layer (member.extra),
so a ViT's 12 blocks x 6 same-shape projections are one vmapped program. Every
layer's ProbeX comes back as an ordinary fitted `probex` encoder.

Usage:
  sweep = layer_sweep(tensors_R, task_R, val=(tensors_V, task_V), n_probes=32)
  sweep.table                    # pandas: layer, d_H, d_W, val_score, best_epoch
  sweep.best.score(tensors_T, task_T)     # the ProbeX of the best validation layer
"""
import dataclasses

import jax
import numpy as np
import pandas as pd

from jatlas.weights.encoder import FIT_KEYS, Encoder
from jatlas.weights.fit import FitSettings, fit_module
from jatlas.weights.inputs import as_tensors, layer_matrix
from jatlas.weights.probex import ProbeXEncoder


@dataclasses.dataclass
class SweepResult:
  table: pd.DataFrame
  encoders: dict            # layer name -> fitted ProbeXEncoder
  best_layer: str

  @property
  def best(self) -> ProbeXEncoder:
    return self.encoders[self.best_layer]


def default_layers(tensors: dict) -> list[str]:
  """Every kernel (Dense or conv), else every tensor with >= 2 weight axes."""
  kernels = [n for n in sorted(tensors) if n.endswith("kernel")]
  return kernels or [n for n in sorted(tensors) if tensors[n].ndim >= 3]


def shape_groups(tensors: dict, layers) -> dict[tuple, list[str]]:
  """(d_H, d_W) -> the layers with that matrix shape, in the given order."""
  groups: dict[tuple, list[str]] = {}
  for n in layers:
    groups.setdefault(layer_matrix(tensors[n][:1], n).shape[1:], []).append(n)
  return groups


class _StackedProbeX(ProbeXEncoder):
  """A ProbeX population whose member m reads layer member.extra["layer"]."""
  name = "probex_stacked"  # not registered: only the sweep builds it

  def features(self, tensors, fitting):
    x_RLHW = np.stack([layer_matrix(tensors[n], n) for n in self.layers], axis=1)
    self.dims_ = x_RLHW.shape[2:]
    return x_RLHW

  @staticmethod
  def gather_member(x_RLHW, idx_B, member):
    """Rows idx_B of the member's own layer only: [B, d_H, d_W] (Population.gather)."""
    return x_RLHW[idx_B, member.extra["layer"]]


def layer_sweep(W, y, *, val, task: str = "multiclass", layers=None, **kw) -> SweepResult:
  """ProbeX on each layer of W (default: every kernel); kw: ProbeX and fit settings."""
  tensors, tensors_V = as_tensors(W), as_tensors(val[0])
  layers = default_layers(tensors) if layers is None else list(layers)
  missing = [n for n in layers if n not in tensors or n not in tensors_V]
  if missing:
    raise KeyError(f"layer_sweep: layers {missing} not in W and val; W holds {sorted(tensors)}")
  encoders, rows = {}, []
  for dims, group in shape_groups(tensors, layers).items():
    enc = _StackedProbeX(**kw)
    enc.layers, enc.task_ = group, task
    y_R, y_V = enc._targets(y, fitting=True), enc._targets(val[1], fitting=False)
    x_R, x_V = enc.features(tensors, True), enc.features(tensors_V, False)
    enc.n_out_ = enc.n_out(y_R)
    settings = FitSettings(**{k: enc.config[k] for k in FIT_KEYS})
    result = fit_module(enc.build(enc.n_out_), x_R, y_R, task=task, val=(x_V, y_V),
                        settings=settings, extra_M={"layer": np.arange(len(group))},
                        gather=enc.gather_member, sample=x_R[:1, 0])
    inner = len(result.val_score_M) // len(group)
    for i, name in enumerate(group):
      j = i * inner + int(np.argmax(result.val_score_M[i * inner:(i + 1) * inner]))
      encoders[name] = _as_layer_encoder(enc, result, j, name, kw)
      rows.append({"layer": name, "d_H": dims[0], "d_W": dims[1],
                   "val_score": float(result.val_score_M[j]),
                   "best_epoch": int(result.best_epoch_M[j]), "population": len(group) * inner})
  table = pd.DataFrame(rows)
  best = table.layer[int(np.argmax(table.val_score.to_numpy()))]
  return SweepResult(table=table, encoders=encoders, best_layer=best)


def _as_layer_encoder(stacked: Encoder, result, member: int, layer: str, kw) -> ProbeXEncoder:
  """Member `member` of a sweep population as a fitted one-layer `probex` encoder."""
  enc = ProbeXEncoder(**{**kw, "layer": layer})
  enc.task_, enc.n_out_, enc.dims_ = stacked.task_, stacked.n_out_, tuple(stacked.dims_)
  if hasattr(stacked, "classes_"):
    enc.classes_ = stacked.classes_
  enc.params_ = jax.tree.map(lambda a: a[member:member + 1], result.params)
  enc.record_ = {"val_score": [float(result.val_score_M[member])],
                 "best_epoch": [int(result.best_epoch_M[member])], "best_member": 0,
                 "members": {k: [v[member]] for k, v in result.members.items()}}
  return enc
