"""Heatmap of a [rows x columns] score table in [0, 1] (matplotlib Figure, no pyplot state).

Usage:
  plot_matrix(table_df, "cka.png", "linear CKA: a vs b")
  plot_matrix(acc_df, "stitch.png", "a -> b", xlabel="receiver tap", ylabel="sender tap",
              annotate=True, cmap="magma", label="stitched test accuracy")
"""
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def plot_matrix(table: pd.DataFrame, path: str, title: str = "", *, xlabel: str = "",
                ylabel: str = "", annotate: bool = False, cmap: str = "viridis",
                label: str = "") -> None:
  """NaN cells show as '-' when annotated."""
  values = table.to_numpy(float)
  fig = Figure(figsize=(1.5 + 0.7 * table.shape[1], 1.2 + 0.6 * table.shape[0]))
  ax = fig.subplots()
  im = ax.imshow(values, vmin=0, vmax=1, cmap=cmap)
  if annotate:
    for (i, j), v in np.ndenumerate(values):
      ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
              color="white" if np.isnan(v) or v < 0.6 else "black")
  ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
  ax.set_yticks(range(table.shape[0]), table.index)
  ax.set(xlabel=xlabel, ylabel=ylabel)
  ax.set_title(title, fontsize=9)
  fig.colorbar(im, ax=ax, label=label)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
