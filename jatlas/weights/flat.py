"""Encoders of standardised statistics or flattened weights: StatNN, dense, mlp_flat.

statnn    per-tensor statistics (mean, std, quartiles; Unterthiner et al. 2020) of
          every tensor in W + a linear head (`hidden=()`) or an MLP head.
dense     a linear classifier on one flattened layer (ProbeX's "Dense expert").
mlp_flat  an MLP on all tensors of W flattened and concatenated.
Features are standardised with the training models' mean and std (kept in prep_).

Usage:
  enc = make_encoder("statnn", hidden=(256,)).fit(tensors_R, task_R)
  enc = make_encoder("dense", layer="params/conv1/kernel").fit(tensors_R, task_R)
"""
import numpy as np

from jatlas.weights.encoder import Encoder, register
from jatlas.weights.features import statnn_features
from jatlas.weights.heads import MLP
from jatlas.weights.inputs import pick_layer


class _Standardised(Encoder):
  """Features [R, F] from `raw`, standardised with the training models' statistics.
  Trained with SGD + L2 by default: Adam's per-weight normalised steps move the
  weights of pure-noise features as fast as the informative ones, and a linear
  head on many features then memorises (planted test: 0.57 with Adam, 0.87 SGD)."""
  fit_defaults = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-3}
  # least squares on correlated statistics: SGD at that rate diverges, Adam does not
  task_fit_defaults = {"regression": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5}}

  def raw(self, tensors: dict) -> np.ndarray:
    raise NotImplementedError

  def features(self, tensors, fitting):
    x_RF = self.raw(tensors)
    if fitting:
      self.prep_.update(mean_F=x_RF.mean(0), std_F=x_RF.std(0) + 1e-8)
    elif x_RF.shape[1] != self.prep_["mean_F"].shape[0]:
      raise ValueError(f"{self.name}: W gives {x_RF.shape[1]} features, the encoder was "
                       f"fitted on {self.prep_['mean_F'].shape[0]} (same tensors expected)")
    return ((x_RF - self.prep_["mean_F"]) / self.prep_["std_F"]).astype(np.float32)

  def build(self, n_out):
    return MLP(hidden=tuple(self.config["hidden"]), n_out=n_out)


@register
class StatNN(_Standardised):
  name = "statnn"
  defaults = {"hidden": ()}

  def raw(self, tensors):
    return statnn_features(tensors)[0]


@register
class Dense(_Standardised):
  name = "dense"
  defaults = {"layer": None, "hidden": ()}

  def raw(self, tensors):
    _, w = pick_layer(tensors, self.config["layer"])
    return w.reshape(len(w), -1)


@register
class MLPFlat(_Standardised):
  name = "mlp_flat"
  defaults = {"hidden": (256, 256)}
  # SGD at the linear heads' 0.05 diverges through tens of thousands of inputs
  fit_defaults = {**_Standardised.fit_defaults, "lr": 0.005}

  def raw(self, tensors):
    return np.concatenate([tensors[k].reshape(len(tensors[k]), -1) for k in sorted(tensors)], 1)
