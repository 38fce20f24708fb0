"""Figures of learning on weights (matplotlib Figure, no pyplot state).

Usage:
  plot_confusion(result["confusion"], task_names, "confusion.png", "task ID from weights")
  plot_learning_curve(curve_df, "learning_curve.png")
"""
import numpy as np
from matplotlib.figure import Figure


def plot_confusion(confusion, labels, path: str, title: str) -> None:
  """Row-normalised confusion matrix (true task x predicted task)."""
  c = np.asarray(confusion, float)
  c = c / np.maximum(c.sum(1, keepdims=True), 1)
  fig = Figure(figsize=(6, 5))
  ax = fig.subplots()
  im = ax.imshow(c, vmin=0, vmax=1, cmap="viridis")
  ax.set_xticks(range(len(labels)), labels, rotation=90)
  ax.set_yticks(range(len(labels)), labels)
  ax.set(xlabel="predicted", ylabel="true", title=title)
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def plot_learning_curve(curve, path: str, title: str = "task ID vs models per task") -> None:
  """curve: DataFrame with `models_per_task` and one accuracy column per method."""
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  methods = [c for c in curve.columns if c not in ("models_per_task", "n_train")]
  for m in methods:
    ax.plot(curve.models_per_task, curve[m], marker="o", label=m,
            linestyle="--" if m == "linearised" else "-")
  ax.axhline(0.1, color="gray", lw=0.8, ls=":", label="chance")
  ax.set(xscale="log", xlabel="training models per task", ylabel="test accuracy (10-way)",
         ylim=(0, 1.02), title=title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
