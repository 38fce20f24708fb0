"""Figures of learning on weights (matplotlib Figure, no pyplot state).

Usage:
  plot_confusion(result["confusion"], task_names, "confusion.png", "task ID from weights")
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
