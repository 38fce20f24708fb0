"""One interface for every weight encoder, in the scikit-learn habit.

An encoder reads models' weights `W` (one stacked layer [R, ...] or a dict of
stacked tensors, `jatlas.weights.inputs`) and predicts what each model learned.
A subclass says two things: `features(tensors, fitting)` (NumPy preprocessing;
statistics it fits, e.g. standardisation, go in `self.prep_`) and `build(n_out)`
(a Flax module over a batch of features). `fit` trains the module on the
population engine (`jatlas.weights.fit`): Adam, early stopping on the validation
models, the seeds and hyper-parameters recorded; the member with the best
validation score is kept (`ensemble=True`: the mean of every member's outputs).

Usage:
  enc = make_encoder("probex", layer="params/fc1/kernel", epochs=100)
  enc.fit(W_train, y_train, task="multiclass", val=(W_val, y_val))
  enc.predict(W_test); enc.score(W_test, y_test); enc.evaluate(W_test, y_test)
  enc.save("runs/enc"); enc = load_encoder("runs/enc")
"""
import difflib
import json
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.model_selection import train_test_split

from jatlas import files, tensor_files
from jatlas.flat_names import flatten_variables, unflatten_variables
from jatlas.weights import metrics
from jatlas.weights.fit import FitSettings, fit_module
from jatlas.weights.inputs import as_tensors

ENCODERS: dict[str, type] = {}
FIT_KEYS = tuple(f.name for f in FitSettings.__dataclass_fields__.values())
MANIFEST, PARAMS = "encoder.json", "params.safetensors"
PREDICT_CHUNK = 256


def register(cls):
  """Class decorator: makes `cls` available as make_encoder(cls.name)."""
  ENCODERS[cls.name] = cls
  return cls


def make_encoder(name: str, **kw) -> "Encoder":
  if name not in ENCODERS:
    near = difflib.get_close_matches(name, list(ENCODERS), n=1)
    raise KeyError(f"unknown encoder {name!r}{f' (did you mean {near[0]!r}?)' if near else ''};"
                   f" known: {sorted(ENCODERS)}")
  return ENCODERS[name](**kw)


class Encoder:
  """Base class (module docstring). `defaults`: the encoder's own hyper-parameters."""
  name: ClassVar[str] = "encoder"
  defaults: ClassVar[dict] = {}
  fit_defaults: ClassVar[dict] = {}   # FitSettings overrides for this encoder
  task_fit_defaults: ClassVar[dict] = {}  # task -> overrides of those, unless given

  def __init__(self, **kw):
    known = {**self.defaults, **{k: getattr(FitSettings(), k) for k in FIT_KEYS},
             "ensemble": False, "val_fraction": 0.2}
    unknown = [k for k in kw if k not in known]
    if unknown:
      hints = [f"{k!r}" + (f" (did you mean {n[0]!r}?)" if (n := difflib.get_close_matches(
          k, list(known), n=1)) else "") for k in unknown]
      raise TypeError(f"{self.name} encoder: unknown argument(s) {', '.join(hints)}; "
                      f"known: {sorted(known)}")
    self.config = {**known, **self.fit_defaults, **kw}
    self.given_ = set(kw)
    self.prep_: dict[str, np.ndarray] = {}

  # ------------------------------------------------------------ subclass hooks

  def features(self, tensors: dict, fitting: bool):
    """tensors {name: [R, ...]} -> pytree of [R, ...] module inputs."""
    return tensors

  def build(self, n_out: int):
    raise NotImplementedError

  def restore(self) -> None:
    """Called after load_encoder has set prep_ (arrays) and meta_ (JSON values):
    rebuild what features() fitted."""

  def apply_member(self, module, params, x_B, member):
    """How one population member applies the module (override to read member.extra;
    member is None when predicting)."""
    return module.apply({"params": params}, x_B)

  # ------------------------------------------------------------ fit / predict

  def _targets(self, y, fitting: bool):
    if self.task_ == "multiclass":
      y = np.asarray(y)
      if fitting:
        self.classes_ = np.unique(y)
      idx = np.searchsorted(self.classes_, y)
      unseen = (idx >= len(self.classes_)) | (self.classes_[np.minimum(idx, len(self.classes_) - 1)] != y)
      if unseen.any():
        raise ValueError(f"labels {sorted(set(y[unseen].tolist()))[:5]} not among the classes "
                         f"seen in fit ({self.classes_.tolist()[:10]}...)")
      return idx.astype(np.int32)
    y = np.asarray(y, np.float32)
    if self.task_ == "multilabel" and y.ndim != 2:
      raise ValueError(f"multilabel y needs shape [R, K] of 0/1, got {y.shape}")
    return y

  def _scaled(self, y_R, fitting: bool):
    """Regression targets standardised with the training models' mean and std: one
    learning rate then suits any target scale (raw test accuracies made SGD diverge)."""
    if self.task_ != "regression":
      return y_R
    if fitting:
      self.prep_["y_mean"] = np.asarray(y_R.mean(), np.float32)
      self.prep_["y_std"] = np.asarray(y_R.std() + 1e-8, np.float32)
    return (y_R - self.prep_["y_mean"]) / self.prep_["y_std"]

  def n_out(self, y) -> int:
    if self.task_ == "multiclass":
      return len(self.classes_)
    return y.shape[-1] if self.task_ == "multilabel" else 1

  def fit(self, W, y, *, task: str = "multiclass", val=None, extra_M=None) -> "Encoder":
    """Trains on models W -> y; val=(W_val, y_val) picks the epoch (default: a
    stratified `val_fraction` of the training models, seeded by the first seed)."""
    if task not in metrics.TASKS:
      raise ValueError(f"task={task!r}: expected one of {metrics.TASKS}")
    self.task_ = task
    tensors = as_tensors(W)
    r = len(next(iter(tensors.values())))
    if len(y) != r:
      raise ValueError(f"W holds {r} models but y has {len(y)} rows")
    if val is None:
      val, tensors, y = self._split_val(tensors, np.asarray(y))
    y_R = self._targets(y, fitting=True)
    y_V = self._targets(val[1], fitting=False)
    y_R, y_V = self._scaled(y_R, True), self._scaled(y_V, False)
    x_R = self.features(tensors, fitting=True)
    x_V = self.features(as_tensors(val[0]), fitting=False)
    self.n_out_ = self.n_out(y_R)
    task_kw = {k: v for k, v in self.task_fit_defaults.get(task, {}).items()
               if k not in self.given_}
    self.config.update(task_kw)
    settings = FitSettings(**{k: self.config[k] for k in FIT_KEYS})
    result = fit_module(self.build(self.n_out_), x_R, y_R, task=task, val=(x_V, y_V),
                        settings=settings, extra_M=extra_M, apply=self.apply_member)
    self.fit_result_ = result
    keep = slice(None) if self.config["ensemble"] else slice(result.best_member,
                                                             result.best_member + 1)
    self.params_ = jax.tree.map(lambda a: a[keep], result.params)
    self.record_ = {"val_score": result.val_score_M.tolist(),
                    "best_epoch": result.best_epoch_M.tolist(),
                    "best_member": result.best_member, "members": result.members,
                    "n_train": int(r if val is None else len(y_R)), "n_val": int(len(y_V))}
    return self

  def _split_val(self, tensors, y):
    idx = np.arange(len(y))
    strat = y if (self.task_ == "multiclass" and np.unique(y, return_counts=True)[1].min() > 1) \
        else None
    tr, va = train_test_split(idx, test_size=self.config["val_fraction"],
                              random_state=int(np.atleast_1d(self.config["seeds"])[0]),
                              stratify=strat)
    take = lambda t, i: {k: v[i] for k, v in t.items()}
    return (take(tensors, va), y[va]), take(tensors, tr), y[tr]

  def decision_function(self, W) -> np.ndarray:
    """Raw outputs: logits [R, K] (multiclass / multilabel) or values [R] (regression)."""
    if not hasattr(self, "params_"):
      raise RuntimeError(f"{self.name} encoder is not fitted: call fit() or load_encoder()")
    x_R = self.features(as_tensors(W), fitting=False)
    fn = self._predict_fn()
    r = len(jax.tree.leaves(x_R)[0])
    outs = [np.asarray(fn(self.params_, jax.tree.map(lambda a: a[i:i + PREDICT_CHUNK], x_R)))
            for i in range(0, r, PREDICT_CHUNK)]
    out = np.concatenate(outs, axis=1).mean(0)  # members, then models
    if self.task_ == "regression":
      return out[:, 0] * self.prep_["y_std"] + self.prep_["y_mean"]
    return out

  def _predict_fn(self):
    """One jitted apply per fitted encoder (rebuilt when the module changes)."""
    module = self.build(self.n_out_)
    cached = getattr(self, "_predict_cache", (None, None))
    try:
      same = cached[0] == module
    except ValueError:  # a module holding an array (class embeddings): compare them
      same = False
    if not same:
      self._predict_cache = (module, _batched_apply(self, module))
    return self._predict_cache[1]

  def predict(self, W) -> np.ndarray:
    out = self.decision_function(W)
    if self.task_ == "multiclass":
      return self.classes_[np.argmax(out, -1)]
    return (out > 0).astype(np.int32) if self.task_ == "multilabel" else out

  def evaluate(self, W, y) -> dict:
    """Every metric of the task (jatlas.weights.metrics)."""
    return metrics.task_metrics(self.task_, self._targets(y, fitting=False),
                                self.decision_function(W))

  def score(self, W, y) -> float:
    """The task's primary metric: accuracy, element-wise accuracy or Kendall tau."""
    return self.evaluate(W, y)[metrics.PRIMARY[self.task_]]

  # ------------------------------------------------------------ save / load

  def save(self, path: str) -> None:
    """Directory with params.safetensors, then encoder.json (written last: a
    directory without it is not a finished encoder)."""
    os.makedirs(path, exist_ok=True)
    flat = {f"params/{k}": np.asarray(v) for k, v in flatten_variables(self.params_).items()}
    flat.update({f"prep/{k}": np.asarray(v) for k, v in self.prep_.items()})
    files.write_safetensors(os.path.join(path, PARAMS), flat)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.items()}
    files.write_json(os.path.join(path, MANIFEST), {
        "format": "jatlas-encoder", "name": self.name, "config": _jsonable(config),
        "task": self.task_, "n_out": self.n_out_,
        "classes": self.classes_.tolist() if self.task_ == "multiclass" else None,
        "record": _jsonable(self.record_), "meta": _jsonable(getattr(self, "meta_", {}))})


def _jsonable(obj):
  return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                               else repr(o)))


def _batched_apply(enc: Encoder, module):
  """jit(params with a member axis, x_B) -> outputs [members, B, ...]."""
  return jax.jit(jax.vmap(lambda p, x: enc.apply_member(module, p, x, None), in_axes=(0, None)))


def load_encoder(path: str) -> Encoder:
  """A fitted encoder saved by `Encoder.save`."""
  manifest_path = os.path.join(path, MANIFEST)
  if not os.path.isfile(manifest_path):
    raise FileNotFoundError(f"{path}: no {MANIFEST}; not a saved (finished) encoder")
  with open(manifest_path) as f:
    m = json.load(f)
  if m.get("format") != "jatlas-encoder":
    raise ValueError(f"{manifest_path}: format {m.get('format')!r}, expected 'jatlas-encoder'")
  enc = make_encoder(m["name"], **_restore_config(ENCODERS[m["name"]], m["config"]))
  with tensor_files.open_tensors(os.path.join(path, PARAMS), what="encoder params file") as t:
    flat = {k: t.read(k) for k in t.names()}
  enc.params_ = unflatten_variables({k[len("params/"):]: jnp.asarray(v) for k, v in flat.items()
                                     if k.startswith("params/")})
  enc.prep_ = {k[len("prep/"):]: v for k, v in flat.items() if k.startswith("prep/")}
  enc.task_, enc.n_out_, enc.record_ = m["task"], m["n_out"], m["record"]
  enc.meta_ = m.get("meta", {})
  if m["classes"] is not None:
    enc.classes_ = np.asarray(m["classes"])
  enc.restore()
  return enc


def _restore_config(cls, config: dict) -> dict:
  """JSON lists back to the tuples the defaults use."""
  out = {}
  for k, v in config.items():
    default = {**cls.defaults, "seeds": (0,)}.get(k)
    out[k] = tuple(v) if isinstance(v, list) and isinstance(default, tuple) else v
  return out
