"""Hypernetworks: a task's conditioning vector -> the full params pytree of a net.

Both generate every tensor of a net's params template (`param_template`: shapes from
`jax.eval_shape` of the net's init, so any jatlas net works), each through its own
linear head from a layer-normalised code h and a learned scale initialised to the
Glorot std of that tensor (biases: `bias_scale`), so a fresh hypernet generates nets
as sane as the net's own initialisation; the heads' biases form a shared base net.

`HyperNet`: h from a small MLP of the conditioning vector c [C] (a one-hot task, or
`task_embeddings`) and optionally a noise vector z [Z]; every tensor depends on the
task. A task it was not trained on gets an untrained code.
`PrototypeHyperNet`: for tasks never trained on. c is the task's mean positive image
(`mean_images`); the body is generated from one learned code shared by all tasks and
the 2-class head from the body's features of that image (a nearest-prototype rule),
so any task with example images gets a detector.

Training on a zoo (functional distillation through the population engine) is in
`jatlas.weights.hypernet_train`, evaluation in `jatlas.weights.hypernet_eval`.

Usage:
  net = nets.LeNet5(num_classes=2, activation="tanh")
  hyper = HyperNet(param_template(net, x_1HWC), hidden=64, code=32)
  hyper_params = init_hypernet(hyper, key, cond_dim=10)
  detector = generate(hyper, hyper_params, jax.nn.one_hot(3, 10))   # net's params
  logits_NK = net.apply({"params": detector}, x_NHWC)
  detectors_T = generate(hyper, hyper_params, cond_TC)              # leading task axis
  proto = PrototypeHyperNet(param_template(net, x_1HWC), prototype_features(net), (32, 32, 1))
  detectors_T = generate(proto, proto_params, mean_images(x_NHWC, labels_TN))
"""
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jatlas.flat_names import flatten_variables, unflatten_variables


def glorot_std(shape: Sequence[int]) -> float:
  """Std of Glorot (Xavier) init of a kernel (..., in, out): receptive field = the
  leading axes, as flax's `xavier_uniform`."""
  field = math.prod(shape[:-2])
  return math.sqrt(2.0 / (field * (shape[-2] + shape[-1])))


def param_template(net, x_sample, *, bias_scale: float = 0.05) -> tuple:
  """The net's params as ((flat name, shape, offset, scale), ...), sorted by name.

  Kernels (rank >= 2) get offset 0 and the Glorot std; rank-1 tensors get offset 0
  and `bias_scale`, except norm scales (name ending in "scale") whose offset is 1."""
  shapes = jax.eval_shape(net.init, jax.random.key(0), x_sample)
  if "params" not in shapes:
    raise ValueError(f"{type(net).__name__}.init returned collections {sorted(shapes)}, "
                     "expected a 'params' collection")
  template = []
  for name, leaf in sorted(flatten_variables(shapes["params"]).items()):
    shape = tuple(int(s) for s in leaf.shape)
    if len(shape) >= 2:
      template.append((name, shape, 0.0, glorot_std(shape)))
    else:
      template.append((name, shape, 1.0 if name.endswith("scale") else 0.0, bias_scale))
  return tuple(template)


class HyperNet(nn.Module):
  """(cond [C], noise [Z] or None) -> params pytree of the template (module docstring)."""
  template: tuple          # from param_template
  hidden: int = 64
  code: int = 32

  @nn.compact
  def __call__(self, cond_C, noise_Z=None):
    if cond_C.ndim != 1:
      raise ValueError(f"HyperNet takes one conditioning vector [C], got shape {cond_C.shape}; "
                       "use generate() for a batch [T, C]")
    x = cond_C if noise_Z is None else jnp.concatenate([cond_C, noise_Z])
    h = nn.gelu(nn.Dense(self.hidden, name="trunk1")(x))
    h = nn.LayerNorm(use_scale=False, use_bias=False)(nn.Dense(self.code, name="trunk2")(h))
    return unflatten_variables(_generate(self, h, self.template))


def _generate(mdl: nn.Module, h, template) -> dict:
  """Each template tensor from the code h: a linear head and a learned scale per tensor."""
  sizes = [math.prod(shape) for _, shape, _, _ in template]
  # one Dense for all heads: XLA:CPU compiles each random draw of the init separately
  # and slowly. Unit-variance outputs at init: half from the code, half from the bias.
  w_P = nn.Dense(sum(sizes), kernel_init=nn.initializers.normal(math.sqrt(0.5 / h.shape[-1])),
                 bias_init=nn.initializers.normal(math.sqrt(0.5)), name="heads")(h)
  scale_init = np.asarray([scale for *_, scale in template], np.float32)
  scales = mdl.param("scales", lambda _: jnp.asarray(scale_init))
  out, start = {}, 0
  for i, ((name, shape, offset, _), size) in enumerate(zip(template, sizes)):
    out[name] = offset + scales[i] * w_P[start:start + size].reshape(shape)
    start += size
  return out


class PrototypeHyperNet(nn.Module):
  """A hypernet for tasks never trained on (module docstring): cond [C] or [T, C] is
  each task's mean positive image (`mean_images`, flattened). The body (every tensor but `head`'s) is
  generated from one learned code shared by all tasks; the 2-class head compares
  the body's features f (the tap before the logits) with the prototype's: logit
  margin alpha * (2 f(x) - f(cond) - r) . (f(cond) - r) + beta, r a learned reference
  (the nearest-prototype rule between f(cond) and r). Takes no noise."""
  template: tuple
  features: Callable       # (body params, x_NHWC) -> [N, F], e.g. prototype_features(net)
  image_shape: tuple       # (H, W, C) of the prototype image
  code: int = 32
  head: str = "head"
  batches_tasks = True     # generate() passes cond [T, C] whole: one body for all tasks

  @nn.compact
  def __call__(self, cond, noise_Z=None):
    if noise_Z is not None:
      raise ValueError("PrototypeHyperNet takes no noise")
    if cond.shape[-1] != math.prod(self.image_shape):
      raise ValueError(f"cond shape {cond.shape}: expected [..., {math.prod(self.image_shape)}], "
                       f"a flattened {tuple(self.image_shape)} image (mean_images)")
    is_head = lambda name: name.startswith(self.head + "/")
    kernel = [shape for name, shape, *_ in self.template if name == f"{self.head}/kernel"]
    if not kernel or kernel[0][-1] != 2:
      raise ValueError(f"PrototypeHyperNet needs a 2-class {self.head}/kernel [F, 2] in the "
                       f"template, got {[(n, s) for n, s, *_ in self.template if is_head(n)]}")
    h = self.param("body_code", nn.initializers.normal(1.0), (self.code,))
    h = nn.LayerNorm(use_scale=False, use_bias=False)(h)
    out = _generate(self, h, [e for e in self.template if not is_head(e[0])])
    f_TF = self.features(unflatten_variables(out), cond.reshape(-1, *self.image_shape))
    ref_F = self.param("reference", nn.initializers.zeros, f_TF.shape[1:])
    alpha = self.param("alpha", nn.initializers.constant(1 / math.sqrt(f_TF.shape[1])), ())
    beta = self.param("beta", nn.initializers.zeros, ())
    w_TF = f_TF - ref_F
    margin_TF = 2 * alpha * w_TF
    margin_T = beta - alpha * jnp.sum(w_TF * (f_TF + ref_F), -1)
    if cond.ndim == 2:
      out = {k: jnp.broadcast_to(v, (len(cond), *v.shape)) for k, v in out.items()}
    else:
      margin_TF, margin_T = margin_TF[0], margin_T[0]
    out[f"{self.head}/kernel"] = jnp.stack([-margin_TF, margin_TF], -1) / 2
    out[f"{self.head}/bias"] = jnp.stack([-margin_T, margin_T], -1) / 2
    return unflatten_variables(out)


def prototype_features(net) -> Callable:
  """(params, x) -> the net's features before its logits (its second-to-last tap)."""
  tap = net.tap_names()[-2]
  return lambda params, x: net.apply({"params": params}, x, stop=tap)


def init_hypernet(hyper: HyperNet, key, cond_dim: int, noise_dim: int = 0) -> dict:
  """Fresh hypernet params for conditioning vectors of width `cond_dim`."""
  noise = jnp.zeros(noise_dim) if noise_dim else None
  return hyper.init(key, jnp.zeros(cond_dim), noise)["params"]


def generate(hyper: HyperNet, hyper_params, cond, noise=None):
  """Generated net params for cond [C] (-> params) or [T, C] (-> leaves [T, ...]);
  noise: None, or [Z] / [T, Z] alongside."""
  cond = jnp.asarray(cond, jnp.float32)
  if cond.ndim not in (1, 2):
    raise ValueError(f"cond must be [C] or [T, C], got shape {cond.shape}")
  if noise is not None and jnp.ndim(noise) != cond.ndim:
    raise ValueError(f"noise shape {jnp.shape(noise)} does not match cond shape {cond.shape}")
  one = lambda c, z: hyper.apply({"params": hyper_params}, c, z)
  if cond.ndim == 1 or getattr(hyper, "batches_tasks", False):
    return one(cond, noise)
  return jax.vmap(one)(cond, noise)


def task_embeddings(x_NHWC, labels_TN, *, pool: int = 4) -> np.ndarray:
  """A weights-free, data-derived embedding of each task -> [T, E]: the mean positive
  (label 1) image minus the mean image, average-pooled by `pool`, unit norm.
  Any task with positives gets one, including tasks held out of training."""
  x = np.asarray(x_NHWC, np.float64)
  pos_TN = _positives(x, labels_TN)
  n, hh, ww, c = x.shape
  if hh % pool or ww % pool:
    raise ValueError(f"images of {hh}x{ww} do not pool by {pool}")
  mean_TP = pos_TN @ x.reshape(n, -1) / pos_TN.sum(1, keepdims=True) - x.reshape(n, -1).mean(0)
  pooled = mean_TP.reshape(-1, hh // pool, pool, ww // pool, pool, c).mean((2, 4))
  e_TE = pooled.reshape(len(pooled), -1)
  return (e_TE / np.maximum(np.linalg.norm(e_TE, axis=1, keepdims=True), 1e-12)).astype(
      np.float32)


def mean_images(x_NHWC, labels_TN) -> np.ndarray:
  """Each task's mean positive (label 1) image, flattened -> [T, H*W*C]: the
  conditioning of a `PrototypeHyperNet`."""
  x = np.asarray(x_NHWC, np.float64)
  pos_TN = _positives(x, labels_TN)
  return (pos_TN @ x.reshape(len(x), -1) / pos_TN.sum(1, keepdims=True)).astype(np.float32)


def _positives(x, labels_TN) -> np.ndarray:
  labels_TN = np.asarray(labels_TN)
  if labels_TN.ndim != 2 or labels_TN.shape[1] != len(x):
    raise ValueError(f"labels_TN shape {labels_TN.shape}, expected [T, {len(x)}] for "
                     f"{len(x)} images")
  pos_TN = labels_TN == 1
  empty = np.flatnonzero(pos_TN.sum(1) == 0)
  if len(empty):
    raise ValueError(f"tasks {empty.tolist()} have no positive (label 1) images")
  return pos_TN
