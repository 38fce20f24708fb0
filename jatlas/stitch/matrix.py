"""Stitching matrices: a stitch trained for every (sender tap, receiver tap) pair, for
one model pair or many, all trained through `train_jobs` (one program per receiver tap).

A pair whose shapes no adapter joins (a vector into a map, a non-whole spatial ratio)
is NaN with the reason in `skipped`. Rows are sender taps, columns receiver taps,
entries the test accuracy of the best seed (Hernandez et al.'s "triangle": late
senders into early receivers stitch well, early into late do not; `triangle_summary`).

Usage:
  res = stitch_matrix(net_a, va, net_b, vb, x, y, x_test, y_test,
                      send_taps=("conv1", "pool1", "conv2"), recv_taps=("conv1", "pool1"))
  res["accuracy"]            # pandas DataFrame [sender taps x receiver taps]
  plot_stitch_matrix(res["accuracy"], "stitch.png", title="A -> B")
  res = stitch_matrices({"a": (net, va), "b": (net, vb)}, [("a", "b"), ("a", "b", "mse")],
                        x, y, x_test, y_test, kernels=(1, 3), epochs=10)
  res["accuracy"][("a", "b", "task", 3)], res["table"], res["receiver_acc"]["b"]
"""
from typing import Mapping, Sequence

import jax
import numpy as np
import pandas as pd

from jatlas.stitch.layer import adapter
from jatlas.stitch.population import Job, tap_arrays, train_jobs

KEY = ("sender", "receiver", "target", "kernel")  # one matrix per value of these


def _taps(taps, name: str, net) -> list:
  """Every tap but the logits (None), the same list for every model, or {name: list}."""
  if taps is None:
    return list(net.tap_names()[:-1])
  return list(taps[name]) if isinstance(taps, Mapping) else list(taps)


def _shapes(models: Mapping, names, x) -> dict:
  """{(model, tap): shape without the batch axis} of every tap of the named models."""
  probe = np.asarray(x[:1], np.float32)
  out = {}
  for name in names:
    net, v = models[name]
    taps = jax.eval_shape(lambda xb: net.apply(v, xb, return_taps=True)[1], probe)
    out.update({(name, t): tuple(a.shape[1:]) for t, a in taps.items()})
  return out


def _pairs(pairs) -> list:
  out = []
  for p in pairs:
    if len(p) not in (2, 3):
      raise ValueError(f"pair {p!r}: expected (sender, receiver) or (sender, receiver, target)")
    out.append((p[0], p[1], p[2] if len(p) == 3 else "task"))
  return out


def receiver_accuracy(net, variables, x_test, y_test) -> float:
  """The receiver's own test accuracy, the reference every stitched accuracy is read against."""
  logits = tap_arrays(net, variables, x_test, ["logits"])["logits"]
  return float(np.mean(np.argmax(logits, -1) == np.asarray(y_test)))


def stitch_matrices(models: Mapping, pairs: Sequence, x, y, x_test, y_test, *,
                    send_taps=None, recv_taps=None, kernels: Sequence[int] = (1,),
                    progress: bool = True, **train_kw) -> dict:
  """Stitching matrices of every requested (sender, receiver[, target]) model pair and kernel.

  models: {name: (net, variables)}; taps: None (every tap but the logits), a list for
  every model, or {name: list}; train_kw: `train_jobs`' (seeds, lr, epochs, ...).
  -> {"accuracy": {(sender, receiver, target, kernel): DataFrame}, "table": one row per
  stitch and seed (test_acc, gap to the receiver's own accuracy, test_mse, rel_mse,
  final_loss), "receiver_acc": {name: float}, "skipped": {(sender, receiver, send tap,
  receiver tap): reason}}."""
  pairs = _pairs(pairs)
  missing = sorted({n for p in pairs for n in p[:2]} - set(models))
  if missing:
    raise ValueError(f"stitch_matrices: pairs name models {missing} not in {sorted(models)}")
  shapes = _shapes(models, {n for p in pairs for n in p[:2]}, x)
  jobs, skipped, cells = [], {}, []
  for s, r, target in pairs:
    for ts in _taps(send_taps, s, models[s][0]):
      for tr in _taps(recv_taps, r, models[r][0]):
        try:
          adapter(shapes[(s, ts)], shapes[(r, tr)])
        except (ValueError, KeyError) as e:
          skipped[(s, r, ts, tr)] = str(e)
          continue
        for k in kernels:
          jobs.append(Job(s, ts, r, tr, kernel=k, target=target))
  results = train_jobs(models, jobs, x, y, x_test=x_test, y_test=y_test, progress=progress,
                       **train_kw) if jobs else []
  own = {r: receiver_accuracy(*models[r], x_test, y_test) for r in {p[1] for p in pairs}}
  for j, res in zip(jobs, results):
    for i, seed in enumerate(res["seeds"]):
      cells.append({"sender": j.sender, "receiver": j.receiver, "target": j.target,
                    "kernel": j.kernel, "send_tap": j.send_tap, "recv_tap": j.recv_tap,
                    "seed": seed, "test_acc": float(res["test_acc_M"][i]),
                    "receiver_acc": own[j.receiver],
                    "gap": own[j.receiver] - float(res["test_acc_M"][i]),
                    "test_mse": float(res["test_mse_M"][i]),
                    "rel_mse": float(res["test_rel_mse_M"][i]),
                    "final_loss": float(res["final_loss_M"][i])})
  table = pd.DataFrame(cells, columns=[*KEY, "send_tap", "recv_tap", "seed", "test_acc",
                                       "receiver_acc", "gap", "test_mse", "rel_mse",
                                       "final_loss"])
  acc = {}
  for s, r, target in dict.fromkeys(pairs):
    rows, cols = _taps(send_taps, s, models[s][0]), _taps(recv_taps, r, models[r][0])
    for k in kernels:
      m = pd.DataFrame(np.nan, index=rows, columns=cols)
      part = table[(table.sender == s) & (table.receiver == r) & (table.target == target)
                   & (table.kernel == k)]
      for (ts, tr), a in part.groupby(["send_tap", "recv_tap"]).test_acc.max().items():
        m.loc[ts, tr] = a
      acc[(s, r, target, k)] = m
  return {"accuracy": acc, "table": table, "receiver_acc": own, "skipped": skipped}


def stitch_matrix(sender, vs, receiver, vr, x, y, x_test, y_test, *,
                  send_taps: Sequence[str], recv_taps: Sequence[str], progress: bool = True,
                  **train_kw) -> dict:
  """{"accuracy": DataFrame, "skipped": {(send, recv): reason}, "table"} of one model pair
  (module docstring); train_kw: `train_stitches`' (kernel, target, seeds, epochs, ...)."""
  kernel, target = train_kw.pop("kernel", 1), train_kw.pop("target", "task")
  res = stitch_matrices({"sender": (sender, vs), "receiver": (receiver, vr)},
                        [("sender", "receiver", target)], x, y, x_test, y_test,
                        send_taps=send_taps, recv_taps=recv_taps, kernels=(kernel,),
                        progress=progress, **train_kw)
  return {"accuracy": res["accuracy"][("sender", "receiver", target, kernel)],
          "skipped": {k[2:]: v for k, v in res["skipped"].items()}, "table": res["table"],
          "receiver_acc": res["receiver_acc"]["receiver"]}


def triangle_summary(acc: pd.DataFrame) -> dict:
  """Hernandez et al.'s reading of a matrix (rows = sender taps, columns = receiver taps,
  both in forward order): the last sender into every receiver layer (mean), the first
  sender into the last receiver, and the means of "backward" cells (sender at least as
  deep as the receiver, in proportion to each net's depth) and "forward" ones."""
  a = acc.to_numpy(float)
  i = np.arange(a.shape[0])[:, None] / max(a.shape[0] - 1, 1)
  j = np.arange(a.shape[1])[None, :] / max(a.shape[1] - 1, 1)
  back = np.broadcast_to(i >= j - 1e-9, a.shape)
  mean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
  return {"last_sender_mean": mean(a[-1]), "first_sender_to_last_receiver": float(a[0, -1]),
          "backward_mean": mean(a[back]), "forward_mean": mean(a[~back])}


def plot_stitch_matrix(acc: pd.DataFrame, path: str, title: str = "") -> None:
  from jatlas.similarity.plot import plot_matrix  # matplotlib only when drawing
  plot_matrix(acc, path, title, xlabel="receiver tap", ylabel="sender tap", annotate=True,
              cmap="magma", label="stitched test accuracy")
