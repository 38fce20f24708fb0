"""Training a hypernetwork on a zoo: functional distillation through the population engine.

Objective: for a batch of images, the detector generated for task t should give the
probabilities of the zoo's trained members of task t: soft-target cross-entropy to
their mean positive-class probability q_tn (`zoo_teacher_probs`; in expectation the
same as distilling from one member drawn at random per step, since the loss is
linear in the target). Matching functions, not weights, sidesteps the members'
hidden-unit permutations and uses every member without aligning them. Each task's
examples are weighted so that teacher-positive and teacher-negative mass count
equally (one-vs-rest tasks have ~10% positives; balanced accuracy is the metric).
`label_weight` optionally mixes in the true labels' cross-entropy. Tasks with
train_T False are held out: their targets never reach the loss.

The hypernets are a population on the engine (one member per seed); each member's
`Population.loss` generates every task's detector and scores it on the batch.

Usage:
  ds = data.load_digits(size=32); tasks = data.one_vs_rest(ds); zoo = Zoo.open(path)
  q_TN = zoo_teacher_probs(zoo, ds.x_train, per_task=10)
  cond_TC = mean_images(ds.x_train, tasks.labels["train"])
  trained = train_hypernet(zoo.model(), ds.x_train, q_TN, cond_TC, prototype=True,
                           train_T=np.arange(10) != 7)               # digit 7 held out
  detectors_T = generate(trained.hyper, trained.member_params(0), cond_TC)
"""
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jatlas.weights.hypernet import (HyperNet, PrototypeHyperNet, generate, init_hypernet,
                                     param_template, prototype_features)
from jatlas.zoo import sharding
from jatlas.zoo.engine import Engine, Population
from jatlas.zoo.step import train_data


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained population of hypernets; params leaves [M, ...] (host arrays)."""
  hyper: HyperNet | PrototypeHyperNet
  params: dict
  cond_TC: np.ndarray
  train_T: np.ndarray      # bool: the tasks the loss saw (False: held out)
  loss_SM: np.ndarray      # training loss per step and member
  alive_M: np.ndarray      # False: the member diverged (engine rule)
  seconds: float           # wall time of training, compilation included
  noise_dim: int = 0       # width of the noise vector the hypernets take (0: none)

  def member_params(self, m: int) -> dict:
    return jax.tree.map(lambda a: a[m], self.params)


def zoo_final_rows(zoo) -> np.ndarray:
  """Table rows of the zoo's final, non-diverged checkpoints."""
  t = zoo.table
  return np.flatnonzero(t.final.to_numpy() & (t.status == "ok").to_numpy())


def teacher_probs(net, variables_R, x_N, *, chunk: int = 256) -> np.ndarray:
  """Positive-class (1) probability of each net on each image -> [R, N]."""
  # members one after another (lax.map): a vmap would batch the convolution kernels
  prob = jax.jit(lambda v_R, x: jax.lax.map(
      lambda v: jax.nn.softmax(net.apply(v, x))[:, 1], v_R))
  x_N = np.asarray(x_N, np.float32)
  return np.concatenate([np.asarray(prob(variables_R, x_N[i:i + chunk]))
                         for i in range(0, len(x_N), chunk)], axis=1)


def zoo_teacher_probs(zoo, x_N, *, per_task: int = 10) -> np.ndarray:
  """Mean positive-class probability of (the first) `per_task` final ok members of
  each task on each image -> q [T, N]."""
  t = zoo.table.assign(row=np.arange(zoo.num_checkpoints)).iloc[zoo_final_rows(zoo)]
  t = t.sort_values("member").groupby("task_index", sort=True).head(per_task)
  num_tasks = len(zoo.manifest["tasks"])
  task_R = t.task_index.to_numpy()
  missing = sorted(set(range(num_tasks)) - set(task_R.tolist()))
  if missing:
    raise ValueError(f"zoo {zoo.dir} has no final ok member of tasks {missing}")
  p_RN = teacher_probs(zoo.model(), zoo.stacked_variables(t.row.to_numpy()), x_N)
  count_T = np.bincount(task_R, minlength=num_tasks)
  q_TN = np.zeros((num_tasks, len(x_N)), np.float64)
  np.add.at(q_TN, task_R, p_RN)
  return (q_TN / count_T[:, None]).astype(np.float32)


def hypernet_population(net, hyper: HyperNet, cond_dim: int, *, noise_dim: int = 0,
                        label_weight: float = 0.0) -> Population:
  """Members are hypernets; frozen {"cond_TC", "train_T", "prior_T"}; batch["y"]:
  {"q": teacher probs [B, T], "label": one-vs-rest labels [B, T]} (module docstring)."""
  def init(key, member):
    del member
    k_init, k_noise = jax.random.split(key)
    state = {"noise_key": jax.random.key_data(k_noise)} if noise_dim else {}
    return {"hyper": init_hypernet(hyper, k_init, cond_dim, noise_dim)}, state

  def loss(params, state, batch, member):
    del member
    cond_TC, train_T, prior_T = params["cond_TC"], params["train_T"], params["prior_T"]
    noise_TZ, new_state = None, state
    if noise_dim:
      k_now, k_next = jax.random.split(jax.random.wrap_key_data(state["noise_key"]))
      noise_TZ = jax.random.normal(k_now, (cond_TC.shape[0], noise_dim))
      new_state = {"noise_key": jax.random.key_data(k_next)}
    q_TB, label_TB = batch["y"]["q"].T, batch["y"]["label"].T
    p_T1 = prior_T[:, None]
    w_TB = 0.5 * q_TB / p_T1 + 0.5 * (1 - q_TB) / (1 - p_T1)

    # one task after another: each detector runs the net's unbatched (fast) convolution,
    # where a vmap over tasks would batch its kernels
    def task_loss(total, xs):
      detector, q_B, label_B, w_B, train = xs
      logp_BK = jax.nn.log_softmax(net.apply({"params": detector}, batch["x"]))
      ce_B = -(q_B * logp_BK[:, 1] + (1 - q_B) * logp_BK[:, 0])
      if label_weight:
        label_ce_B = -jnp.take_along_axis(logp_BK, label_B[:, None], -1)[:, 0]
        ce_B = (1 - label_weight) * ce_B + label_weight * label_ce_B
      return total + jnp.where(train, (w_B * ce_B).mean(), 0.0), None

    detectors_T = generate(hyper, params["hyper"], cond_TC, noise_TZ)
    xs = (detectors_T, q_TB, label_TB, w_TB, train_T)
    total, _ = jax.lax.scan(task_loss, jnp.zeros(()), xs)
    return total / jnp.sum(train_T), new_state

  return Population(init=init, loss=loss)


def _mesh(members: int, devices=None):
  """The first d devices, d the largest divisor of `members` there are devices for:
  no padded members, which in a member loop would still compute every step."""
  devices = jax.devices() if devices is None else list(devices)
  d = max(k for k in range(1, len(devices) + 1) if members % k == 0)
  return sharding.population_mesh(devices[:d])


def train_hypernet(net, x_N, q_TN, cond_TC, *, labels_TN=None, train_T=None, seeds=(0, 1),
                   steps: int = 200, batch_size: int = 64, lr: float = 1e-3, hidden: int = 64,
                   code: int = 32, bias_scale: float = 0.05, noise_dim: int = 0,
                   label_weight: float = 0.0, prototype: bool = False,
                   steps_per_call: int = 100, devices=None, progress: bool = True) -> Trained:
  """Trains len(seeds) hypernets for `net` (module docstring) -> Trained.

  x_N: training images; q_TN: teacher probabilities (`zoo_teacher_probs`); cond_TC:
  each task's conditioning vector (prototype=True: `mean_images`, for a
  `PrototypeHyperNet`; else any vectors, for a `HyperNet`); labels_TN: one-vs-rest
  labels, needed only for label_weight > 0; train_T: bool, the tasks to train on
  (default all). Each step scores every task's detector on `batch_size` images;
  noise_dim > 0 draws a fresh noise vector per task and step."""
  x_N = np.asarray(x_N, np.float32)
  q_TN = np.asarray(q_TN, np.float32)
  cond_TC = np.asarray(cond_TC, np.float32)
  if q_TN.ndim != 2 or q_TN.shape[1] != len(x_N) or cond_TC.shape[:1] != q_TN.shape[:1]:
    raise ValueError(f"q_TN {q_TN.shape} and cond_TC {cond_TC.shape}: expected [T, N] and "
                     f"[T, C] with N = {len(x_N)} images")
  t, n = q_TN.shape
  train_T = np.ones(t, bool) if train_T is None else np.asarray(train_T, bool)
  if train_T.shape != (t,) or not train_T.any():
    raise ValueError(f"train_T {train_T.shape}: expected bool [{t}] with some True")
  if label_weight and labels_TN is None:
    raise ValueError("label_weight > 0 needs labels_TN (one-vs-rest labels [T, N])")
  labels_TN = np.zeros((t, n), np.int32) if labels_TN is None else np.asarray(labels_TN, np.int32)
  if labels_TN.shape != (t, n) or labels_TN.min() < 0:
    raise ValueError(f"labels_TN {labels_TN.shape}: expected labels 0/1 of shape [{t}, {n}]")
  template = param_template(net, x_N[:1], bias_scale=bias_scale)
  if prototype:  # cond_TC: mean positive images (`mean_images`)
    hyper = PrototypeHyperNet(template, prototype_features(net), x_N.shape[1:], code=code)
  else:
    hyper = HyperNet(template, hidden=hidden, code=code)
  pop = hypernet_population(net, hyper, cond_TC.shape[1], noise_dim=noise_dim,
                            label_weight=label_weight)
  prior_T = np.clip(q_TN.mean(1), 1e-3, 1 - 1e-3)
  frozen = {"cond_TC": cond_TC, "train_T": train_T, "prior_T": prior_T}
  eng = Engine(pop, batch_size=batch_size, steps_per_epoch=-(-n // batch_size),
               mesh=_mesh(len(seeds), devices), frozen=frozen, member_loop=True)
  members = eng.members(seed=np.asarray(seeds), lr=lr, total_steps=steps)
  # one "task row" holding every task's targets: each member learns all tasks
  data = eng.put(train_data(x_N, {"q": q_TN.T[None], "label": labels_TN.T[None]}))
  t0 = time.time()
  states, losses, step = eng.init(members), [], 0
  with tqdm(total=steps, desc=f"hypernet x{len(seeds)}", unit="step",
            disable=not progress) as bar:
    while step < steps:
      k = min(steps_per_call, steps - step)
      states, loss_SM = eng.run(states, members, data, step, k)
      losses.append(np.asarray(sharding.to_host(loss_SM))[:, :len(seeds)])
      step += k
      bar.update(k)
      bar.set_postfix(loss=f"{np.nanmean(losses[-1][-1]):.3f}")
  host = sharding.to_host({"params": states.params, "alive": states.alive})
  return Trained(hyper=hyper, params=jax.tree.map(lambda a: np.asarray(a)[:len(seeds)],
                                                  host["params"]["hyper"]),
                 cond_TC=cond_TC, train_T=train_T, loss_SM=np.concatenate(losses),
                 alive_M=np.asarray(host["alive"])[:len(seeds)], seconds=time.time() - t0,
                 noise_dim=noise_dim)
