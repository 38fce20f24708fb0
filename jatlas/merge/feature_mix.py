"""Feature averaging between specialists of one StagedNet (Pari et al. 2024, sec. 1.5).

Not weight averaging: the mixed net runs stage by stage, and the output of stage l is
  h_l = sum_k alpha[l, k] * stage_l(variables_k)(h_{l-1}),   h_{-1} = x,
every specialist's stage l applied to the same mixed input. Stages without variables
(a pooling stage) are the same in every specialist: they run once, unweighted, and
their rows of alpha are ignored. alpha is a float (K = 2: the weight on specialist 0,
1 - alpha on specialist 1), a [K] vector for every stage, or an [L, K] array, one row
per tap (L = len(net.tap_names())); weights need not be convex. Specialists run in
eval mode (their own BatchNorm running statistics). alpha is traced: a whole sweep
is one compiled program per input shape.
`mix_forward` is the stage-by-stage mixture itself, shared with learned routing
(`jatlas.merge.routing`), whose weights come from gates instead of alpha.

Usage:
  logits = feature_average(net, [v_code, v_math], x_N, 0.5)
  logits = feature_average(net, vs_K, x_N, alpha_LK, batch_size=256)   # per stage
  df = feature_average_sweep(net, [va, vb], x_N, y_N, np.linspace(0, 1, 11))
  df.loc[df.loss.idxmin()]                                  # alpha, accuracy, loss
"""
import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.special import log_softmax

from jatlas.merge.soups import check_same_structure
from jatlas.padded_batches import map_padded


@dataclasses.dataclass(frozen=True)
class StageInfo:
  """One stage of a StagedNet on a given input: shapes exclude the example axis."""
  tap: str
  start: str | None      # the previous tap (None: the stage reads the net input)
  has_variables: bool
  in_shape: tuple
  out_shape: tuple


@functools.lru_cache(maxsize=None)
def _stage_infos(net, in_shape: tuple, dtype) -> tuple:
  infos, start = [], None
  h = jax.ShapeDtypeStruct((1, *in_shape), dtype)
  for tap in net.tap_names():
    run = functools.partial(net.apply, start=start, stop=tap)
    made = jax.eval_shape(functools.partial(net.init, start=start, stop=tap),
                          jax.random.key(0), h)
    out = jax.eval_shape(run, made, h)
    infos.append(StageInfo(tap, start, bool(jax.tree.leaves(made)), tuple(h.shape[1:]),
                           tuple(out.shape[1:])))
    h, start = jax.ShapeDtypeStruct(out.shape, out.dtype), tap
  return tuple(infos)


def stage_infos(net, x) -> tuple[StageInfo, ...]:
  """Every stage's tap, variables and input/output shapes on inputs shaped like x."""
  return _stage_infos(net, tuple(np.shape(x)[1:]), jnp.result_type(x))


def run_stage(net, variables, info: StageInfo, h):
  """The one stage `info` of net (eval mode) on its input h."""
  return net.apply(variables, h, start=info.start, stop=info.tap)


def mix_forward(net, infos: Sequence[StageInfo], variables_K: Sequence, experts: Sequence,
                weights: Callable, x):
  """Stage by stage: h = sum_e w_e * stage j_e(variables k_e)(h) over the stage's experts.

  experts[l]: ((k, j), ...) for a stage with variables (None for one without, run once
  with variables_K[0]); weights(l, h) -> [E] or [N, E] weights of stage l's experts.
  A weighted sum, not a matmul, so weights 1 and 0 reproduce one expert bit for bit.
  """
  h = x
  for l, info in enumerate(infos):
    if experts[l] is None:
      h = run_stage(net, variables_K[0], info, h)
      continue
    w = weights(l, h)
    mixed = 0.0
    for e, (k, j) in enumerate(experts[l]):
      out = run_stage(net, variables_K[k], infos[j], h)
      w_e = w[..., e]
      mixed = mixed + (w_e.reshape(w_e.shape + (1,) * (out.ndim - w_e.ndim)) * out)
    h = mixed
  return h


def map_batches(fn: Callable, x, batch_size: int | None):
  """fn on all of x at once (batch_size None or >= len(x)), else over padded batches."""
  x = np.asarray(x, np.float32)
  if batch_size is None or batch_size >= len(x):
    return np.asarray(fn(x))
  return map_padded(fn, x, batch_size)


def check_specialists(name: str, variables_K: Sequence) -> tuple:
  """variables_K as a tuple of >= 1 pytrees of one structure (else ValueError)."""
  if isinstance(variables_K, dict) or len(variables_K) < 1:
    raise ValueError(f"{name}: variables_K must be a sequence of >= 1 specialists' "
                     f"variables, got {type(variables_K).__name__}")
  check_same_structure(variables_K[0], variables_K[1:])
  return tuple(variables_K)


def alpha_table(alpha, num_stages: int, k: int) -> np.ndarray:
  """alpha (float | [K] | [L, K]) -> float32 [L, K] (module docstring)."""
  a = np.asarray(alpha, np.float32)
  if a.ndim == 0 and k == 2:
    return np.tile(np.array([a, 1 - a], np.float32), (num_stages, 1))
  if a.shape == (k,):
    return np.tile(a, (num_stages, 1))
  if a.shape == (num_stages, k):
    return a
  scalar = "a float (only for K = 2), " if k == 2 else ""
  raise ValueError(f"alpha has shape {a.shape}; expected {scalar}[K] = [{k}] or "
                   f"[L, K] = [{num_stages}, {k}] (L = the net's taps, K = specialists)")


@functools.lru_cache(maxsize=None)
def _mixed_fn(net, infos: tuple, k: int):
  experts = tuple(tuple((i, l) for i in range(k)) if info.has_variables else None
                  for l, info in enumerate(infos))

  def fn(variables_K, x, alpha_LK):
    return mix_forward(net, infos, variables_K, experts, lambda l, h: alpha_LK[l], x)
  return jax.jit(fn)


def feature_average(net, variables_K: Sequence, x, alpha, *, batch_size: int | None = None):
  """Logits [N, classes] of the feature average of K specialists (module docstring)."""
  variables_K = check_specialists("feature_average", variables_K)
  infos = stage_infos(net, np.asarray(x, np.float32))
  alpha_LK = jnp.asarray(alpha_table(alpha, len(infos), len(variables_K)))
  fn = _mixed_fn(net, infos, len(variables_K))
  return map_batches(lambda xb: fn(variables_K, xb, alpha_LK), x, batch_size)


def classification_scores(logits_NC, y_N) -> tuple[float, float]:
  """(accuracy, mean cross-entropy) of logits against integer labels."""
  logp_NC = log_softmax(np.asarray(logits_NC, np.float64), axis=-1)
  y_N = np.asarray(y_N, np.int64)
  loss = -logp_NC[np.arange(len(y_N)), y_N].mean()
  return float(np.mean(logp_NC.argmax(-1) == y_N)), float(loss)


def feature_average_sweep(net, variables_K: Sequence, x, y, alphas=np.linspace(0, 1, 11), *,
                          batch_size: int | None = None) -> pd.DataFrame:
  """One row per global alpha (weight on specialist 0 of 2): alpha, accuracy, loss."""
  if len(variables_K) != 2:
    raise ValueError(f"feature_average_sweep: a global alpha mixes K = 2 specialists, got "
                     f"K = {len(variables_K)}; call feature_average with [L, K] alphas")
  rows = []
  for a in np.asarray(alphas, np.float64).reshape(-1):
    acc, loss = classification_scores(
        feature_average(net, variables_K, x, float(a), batch_size=batch_size), y)
    rows.append({"alpha": float(a), "accuracy": acc, "loss": loss})
  return pd.DataFrame(rows, columns=["alpha", "accuracy", "loss"])
