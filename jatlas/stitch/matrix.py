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
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(1.5 + 0.7 * acc.shape[1], 1.2 + 0.6 * acc.shape[0]))
  im = ax.imshow(acc.to_numpy(float), vmin=0, vmax=1, cmap="magma")
  for (i, j), v in np.ndenumerate(acc.to_numpy(float)):
    ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
            color="white" if np.isnan(v) or v < 0.6 else "black")
  ax.set_xticks(range(acc.shape[1]), acc.columns, rotation=45, ha="right")
  ax.set_yticks(range(acc.shape[0]), acc.index)
  ax.set_xlabel("receiver tap")
  ax.set_ylabel("sender tap")
  ax.set_title(title, fontsize=9)
  fig.colorbar(im, ax=ax, label="stitched test accuracy")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
