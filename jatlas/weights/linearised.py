"""The linearised template: a net's layers composed with every activation made linear.

With activations replaced by the identity, a net whose other stages are linear
(convs, dense layers, average pooling, flatten, BatchNorm in eval mode) is one
affine map x -> A x + c; its Jacobian A [K, *input_shape] is a weights-only,
permutation-invariant picture of what each logit looks for. For a one-vs-rest
detector the template is A[1] - A[0]: the input pattern that raises "is the
digit" over "is not". Where a stage is not linear (max pooling), A is the
Jacobian at x = 0 of the identity-activation net.

This is an analytic reference, not a learned encoder: a logistic probe on it is
reported apart from the learned encoders (results.json "task_id_linearised").

Usage:
  a_RKI = linear_map(net, variables_R, input_shape=(32, 32, 1))   # [R, K, 32, 32, 1]
  t_RI = detector_template(net, variables_R, (32, 32, 1))        # A[1] - A[0]
  plot_templates(t_RI, task_R, names, "templates.png")
"""
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

CHUNK = 64  # models per jitted Jacobian call


def linear_map(net, variables_R, input_shape, *, chunk: int = CHUNK) -> np.ndarray:
  """Jacobian of the identity-activation net at 0 -> [R, K, *input_shape] per model."""
  if not hasattr(net, "activation"):
    raise ValueError(f"{type(net).__name__} has no `activation` field to linearise")
  lin = net.clone(activation="identity")
  x0 = jnp.zeros((1, *input_shape), jnp.float32)
  jac = jax.jit(jax.vmap(lambda v: jax.jacobian(lambda x: lin.apply(v, x)[0])(x0)[:, 0]))
  r = len(jax.tree.leaves(variables_R)[0])
  parts = [np.asarray(jac(jax.tree.map(lambda a: a[i:i + chunk], variables_R)))
           for i in range(0, r, chunk)]
  return np.concatenate(parts)


def detector_template(net, variables_R, input_shape) -> np.ndarray:
  """A[1] - A[0] of binary detectors -> [R, *input_shape]."""
  a_RK = linear_map(net, variables_R, input_shape)
  if a_RK.shape[1] != 2:
    raise ValueError(f"detector_template needs 2 logits, the net has {a_RK.shape[1]}")
  return a_RK[:, 1] - a_RK[:, 0]


def plot_templates(t_R, labels_R, names, path: str, title: str = "linearised templates") -> None:
  """Mean template per label (one panel each), e.g. what each digit detector looks for."""
  t_R, labels_R = np.asarray(t_R), np.asarray(labels_R)
  classes = np.unique(labels_R)
  fig = Figure(figsize=(1.6 * len(classes), 2.0))
  axes = np.atleast_1d(fig.subplots(1, len(classes)))
  for ax, c in zip(axes, classes):
    mean = t_R[labels_R == c].mean(0)
    img = mean.reshape(mean.shape[:2]) if mean.ndim == 3 and mean.shape[-1] == 1 else mean
    lim = np.abs(img).max() + 1e-12
    ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(str(names[int(c)]) if names is not None else str(c), fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
