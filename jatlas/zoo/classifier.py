"""Classifier populations of a flax net: the engine's default loss (cross-entropy).

Members learn integer labels (`TrainData.y` = labels [T, N], -1 = not in the task);
`init_scale` multiplies each member's initial params; BatchNorm statistics (any
non-"params" collection) are the members' untrained `state`.

Usage:
  pop = classifier(nets.LeNet5(num_classes=2), x_sample_1HWC, optimizers=("adam",))
  eng = Engine(pop, batch_size=128, steps_per_epoch=11)
  loss_M, acc_M, bacc_M = classification_metrics(eng.evaluate(states, members, test_data))
"""
import jax
import jax.numpy as jnp
import optax

from jatlas.zoo.engine import Population


def apply(model, params, state, x, *, train: bool):
  """model.apply with its state collections -> (logits, new_state)."""
  variables = {"params": params, **state}
  if train and state:
    logits, new_state = model.apply(variables, x, train=True, mutable=list(state))
    return logits, dict(new_state)
  return model.apply(variables, x, train=train), state


def cross_entropy(model):
  """loss(params, state, batch, member): mean softmax cross-entropy of batch["y"]."""
  def loss(params, state, batch, member):
    del member
    logits, new_state = apply(model, params, state, batch["x"], train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), new_state
  return loss


def classification_metrics(sums):
  """Sums of a classifier's `evaluate` [M, ...] -> (loss, accuracy, balanced accuracy) per member:
  mean CE, accuracy and mean per-class recall over the classes present."""
  count_MK, hits_MK = sums["count_K"], sums["hits_K"]
  total_M = jnp.maximum(count_MK.sum(-1), 1)
  present = count_MK > 0
  recall_MK = jnp.where(present, hits_MK / jnp.maximum(count_MK, 1), 0.0)
  return (sums["loss"] / total_M, hits_MK.sum(-1) / total_M,
          recall_MK.sum(-1) / jnp.maximum(present.sum(-1), 1))


def classifier(model, x_sample, *, num_classes: int | None = None,
               optimizers=("adam",)) -> Population:
  """A population of `model` classifiers (init from `x_sample`, cross-entropy)."""
  num_classes = model.num_classes if num_classes is None else num_classes

  def init(key, member):
    variables = model.init(key, x_sample)
    params = jax.tree.map(lambda w: w * member.init_scale, variables["params"])
    return params, {k: v for k, v in variables.items() if k != "params"}

  def evaluate(params, state, batch, member):
    del member
    logits, _ = apply(model, params, state, batch["x"], train=False)
    y, valid = batch["y"], batch["valid"] & (batch["y"] >= 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
    onehot_BK = jax.nn.one_hot(y, num_classes) * valid[:, None]  # -1 -> all zeros
    correct = (jnp.argmax(logits, -1) == y)[:, None]
    return {"loss": jnp.sum(jnp.where(valid, ce, 0.0)),
            "hits_K": jnp.sum(onehot_BK * correct, 0), "count_K": jnp.sum(onehot_BK, 0)}

  return Population(init=init, loss=cross_entropy(model), evaluate=evaluate,
                    optimizers=tuple(optimizers))
