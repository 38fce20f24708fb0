"""Learning on weights: encoders that predict what a model learned from its weights.

Usage:
  from jatlas import weights
  tensors_R = {n: zoo.stacked(n, rows) for n in zoo.names if n.startswith("params/")}
  enc = weights.make_encoder("probex", layer="params/conv2/kernel")
  enc.fit(tensors_R, task_R, task="multiclass", val=(tensors_V, task_V))
  enc.score(tensors_T, task_T)          # accuracy; enc.evaluate(...) gives every metric
  weights.ENCODERS                      # every registered encoder by name
"""
from jatlas.weights import flat, input_probing, probex, spec_encoders  # noqa: F401  (registry)
from jatlas.weights.encoder import ENCODERS, Encoder, load_encoder, make_encoder, register
from jatlas.weights.features import statnn_features
from jatlas.weights.fit import FitResult, FitSettings, fit_module
from jatlas.weights.inputs import as_tensors, layer_matrix
from jatlas.weights.metrics import task_metrics
from jatlas.weights.predict import member_split, task_identification
from jatlas.weights.probex import probex_param_count
from jatlas.weights.trees import Router, TreeExperts, cluster_trees

__all__ = [
    "ENCODERS", "Encoder", "make_encoder", "load_encoder", "register", "statnn_features",
    "FitSettings", "FitResult", "fit_module", "as_tensors", "layer_matrix", "task_metrics",
    "member_split", "task_identification", "probex_param_count", "cluster_trees", "Router",
    "TreeExperts",
]
