"""Stitching matrices: a stitch trained for every (sender tap, receiver tap) pair.

Each pair is one population of `train_stitches` (its members the seeds); a pair
whose shapes no adapter joins (a vector into a map, a non-whole spatial ratio) is
NaN with the reason in `skipped`. Rows are sender taps, columns receiver taps,
entries the test accuracy of the best seed (Hernandez et al.'s "triangle": late
senders into early receivers stitch well, early into late do not).

Usage:
  res = stitch_matrix(net_a, va, net_b, vb, x, y, x_test, y_test,
                      send_taps=("conv1", "pool1", "conv2"), recv_taps=("conv1", "pool1"))
  res["accuracy"]            # pandas DataFrame [sender taps x receiver taps]
  plot_stitch_matrix(res["accuracy"], "stitch.png", title="A -> B")
"""
from typing import Sequence

import numpy as np
import pandas as pd

from jatlas.stitch.layer import adapter
from jatlas.stitch.train import train_stitches


def stitch_matrix(sender, vs, receiver, vr, x, y, x_test, y_test, *,
                  send_taps: Sequence[str], recv_taps: Sequence[str], progress: bool = True,
                  **train_kw) -> dict:
  """{"accuracy": DataFrame, "skipped": {(send, recv): reason}} (module docstring)."""
  probe = np.asarray(x[:2], np.float32)
  shapes_s = {t: sender.apply(vs, probe, stop=t).shape[1:] for t in send_taps}
  shapes_r = {t: receiver.apply(vr, probe, stop=t).shape[1:] for t in recv_taps}
  acc = pd.DataFrame(np.nan, index=list(send_taps), columns=list(recv_taps))
  skipped = {}
  pairs = [(s, r) for s in send_taps for r in recv_taps]
  if progress:
    from tqdm.auto import tqdm
    pairs = tqdm(pairs, desc="stitches", unit="pair")
  for s, r in pairs:
    try:
      adapter(shapes_s[s], shapes_r[r])
    except ValueError as e:
      skipped[(s, r)] = str(e)
      continue
    res = train_stitches(sender, vs, receiver, vr, s, r, x, y, x_test=x_test, y_test=y_test,
                         **train_kw)
    acc.loc[s, r] = float(np.max(res["test_acc_M"]))
  return {"accuracy": acc, "skipped": skipped}


def plot_stitch_matrix(acc: pd.DataFrame, path: str, title: str = "") -> None:
  from jatlas.similarity.plot import plot_matrix  # matplotlib only when drawing
  plot_matrix(acc, path, title, xlabel="receiver tap", ylabel="sender tap", annotate=True,
              cmap="magma", label="stitched test accuracy")
