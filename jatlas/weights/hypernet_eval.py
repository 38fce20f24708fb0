"""Scoring generated detectors, and the whole recipe on a zoo in one call.

`evaluate_hypernet` gives each task's test balanced accuracy (mean recall on
positives and negatives) of the generated detectors beside the zoo's trained members
of that task and randomly initialised nets, through the engine classifier's
evaluation sums. `hypernet_on_zoo` runs teachers -> training -> evaluation for
one-vs-rest tasks, optionally with held-out tasks.

Usage:
  trained, res = hypernet_on_zoo(zoo, ds, tasks, cond="prototype", held_out=(7,))
  res["generated_T"], res["zoo_T"], res["random_T"]           # per task
  bacc_R = detector_bacc(net, params_R, task_R, ds.x_test, tasks.labels["test"])
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from jatlas.weights.hypernet import generate, mean_images, task_embeddings
from jatlas.weights.hypernet_train import (Trained, train_hypernet, zoo_final_rows,
                                           zoo_teacher_probs)
from jatlas.zoo.classifier import classification_metrics, classifier

CONDS = ("prototype", "embedding", "onehot")


def zoo_test_bacc(zoo) -> np.ndarray:
  """Mean test balanced accuracy of the final ok members of each task -> [T]
  (NaN for a task without any)."""
  t = zoo.table.iloc[zoo_final_rows(zoo)]
  means = t.groupby("task_index").test_bacc.mean()
  return means.reindex(range(len(zoo.manifest["tasks"]))).to_numpy(np.float64)


def random_params(net, x_sample, seeds_R) -> dict:
  """The net's own random initialisation from each seed -> params, leaves [R, ...]."""
  init = jax.jit(lambda k_R: jax.lax.map(
      lambda k: net.init(jax.random.key(k), x_sample)["params"], k_R))
  return jax.device_get(init(np.asarray(seeds_R, np.uint32)))


def detector_bacc(net, params_R, task_R, x_N, labels_TN, *, chunk: int = 512) -> np.ndarray:
  """Balanced accuracy of R detectors (params leaves [R, ...]) of tasks task_R on
  (x_N, labels_TN) -> [R]: the engine classifier's evaluation sums, one detector
  after another over chunks of images."""
  task_R = np.asarray(task_R, np.int32)
  x_N = np.asarray(x_N, np.float32)
  labels_TN = np.asarray(labels_TN, np.int32)
  if labels_TN.ndim != 2 or labels_TN.shape[1] != len(x_N) or task_R.max() >= len(labels_TN):
    raise ValueError(f"labels_TN {labels_TN.shape}: expected [T, {len(x_N)}] with T > "
                     f"{task_R.max()} (the largest task in task_R)")
  evaluate = classifier(net, x_N[:1]).evaluate
  sums_fn = jax.jit(lambda p_R, x, y_RB, valid_B: jax.lax.map(
      lambda a: evaluate(a[0], {}, {"x": x, "y": a[1], "valid": valid_B}, None), (p_R, y_RB)))
  total = None
  for i in range(0, len(x_N), chunk):
    x, y_RB = x_N[i:i + chunk], labels_TN[task_R, i:i + chunk]
    sums = sums_fn(params_R, x, y_RB, np.ones(len(x), bool))
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  return np.asarray(classification_metrics(total)[2])


def evaluate_hypernet(net, trained: Trained, x_N, labels_TN, *, zoo_bacc_T=None,
                      random_per_task: int = 4, random_seed: int = 10_000) -> dict:
  """Per-task balanced accuracy -> {"generated_MT": each hypernet's detector,
  "generated_T": the mean over hypernets that did not diverge, "random_T": mean of `random_per_task` random inits
  (seeds from `random_seed`), "zoo_T": zoo_bacc_T (NaN if not given), "train_T":
  the tasks trained on}."""
  t, m = len(trained.cond_TC), len(trained.alive_M)
  # noise-conditioned hypernets are scored at the noise distribution's mean
  noise_TZ = np.zeros((t, trained.noise_dim), np.float32) if trained.noise_dim else None
  gen = jax.jit(lambda p_M: jax.lax.map(
      lambda p: generate(trained.hyper, p, trained.cond_TC, noise_TZ), p_M))
  generated_R = jax.tree.map(lambda a: np.asarray(a).reshape(m * t, *a.shape[2:]),
                             jax.device_get(gen(trained.params)))
  x_N = np.asarray(x_N, np.float32)
  random_R = random_params(net, x_N[:1], random_seed + np.arange(t * random_per_task))
  params_R = jax.tree.map(lambda a, b: np.concatenate([a, b]), generated_R, random_R)
  task_R = np.concatenate([np.tile(np.arange(t), m), np.repeat(np.arange(t), random_per_task)])
  bacc_R = detector_bacc(net, params_R, task_R, x_N, labels_TN)
  generated_MT = bacc_R[:m * t].reshape(m, t)
  zoo_T = np.full(t, np.nan) if zoo_bacc_T is None else np.asarray(zoo_bacc_T, np.float64)
  alive = trained.alive_M
  generated_T = generated_MT[alive].mean(0) if alive.any() else np.full(t, np.nan)
  return {"generated_MT": generated_MT, "generated_T": generated_T,
          "random_T": bacc_R[m * t:].reshape(t, random_per_task).mean(1), "zoo_T": zoo_T,
          "train_T": trained.train_T.copy()}


def conditioning(kind: str, x_N, labels_TN) -> np.ndarray:
  """Each task's conditioning vector -> [T, C]: "prototype" its mean positive image
  (for `PrototypeHyperNet`), "embedding" `task_embeddings`, "onehot" the identity.
  Only "prototype" carries over to held-out tasks: a `HyperNet` fed a held-out
  digit's embedding generated a chance-level detector on digits."""
  if kind == "prototype":
    return mean_images(x_N, labels_TN)
  if kind == "embedding":
    return task_embeddings(x_N, labels_TN)
  if kind == "onehot":
    return np.eye(len(labels_TN), dtype=np.float32)
  raise ValueError(f"unknown conditioning {kind!r}; expected one of {CONDS}")


def hypernet_on_zoo(zoo, ds, tasks, *, cond: str = "prototype", held_out=(),
                    teachers_per_task: int = 10, random_per_task: int = 4,
                    progress: bool = True, **train_kwargs) -> tuple[Trained, dict]:
  """Distils the zoo (trained on `tasks` of `ds`, one-vs-rest) into hypernets that
  never see the tasks in `held_out` (indices), and scores them on the test split
  -> (trained, results): `evaluate_hypernet`'s arrays plus "seconds" per phase.
  train_kwargs go to `train_hypernet`."""
  if tuple(tasks.names) != tuple(zoo.manifest["tasks"]):
    raise ValueError(f"tasks {tasks.names} are not the zoo's {zoo.manifest['tasks']}")
  t = len(tasks)
  held_out = np.asarray(held_out, np.int64).reshape(-1)
  if len(held_out) and (held_out.min() < 0 or held_out.max() >= t):
    raise ValueError(f"held_out {held_out.tolist()}: expected task indices in [0, {t})")
  if len(held_out) and cond == "onehot":
    raise ValueError("a one-hot code of a held-out task is never trained; use cond "
                     "'prototype'")
  x, labels_TN = ds.x_train, tasks.labels["train"]
  seconds, t0 = {}, time.time()
  q_TN = zoo_teacher_probs(zoo, x, per_task=teachers_per_task)
  seconds["teachers"] = time.time() - t0
  trained = train_hypernet(zoo.model(), x, q_TN, conditioning(cond, x, labels_TN),
                           labels_TN=labels_TN, train_T=~np.isin(np.arange(t), held_out),
                           prototype=cond == "prototype", progress=progress, **train_kwargs)
  seconds["train"] = trained.seconds
  t0 = time.time()
  results = evaluate_hypernet(zoo.model(), trained, ds.x_test, tasks.labels["test"],
                              zoo_bacc_T=zoo_test_bacc(zoo), random_per_task=random_per_task)
  seconds["evaluate"] = time.time() - t0
  return trained, {**results, "seconds": seconds}
