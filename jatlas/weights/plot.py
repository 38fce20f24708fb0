"""Figures of learning on weights."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(confusion, labels, path: str, title: str) -> None:
  """Row-normalised confusion matrix (true task x predicted task)."""
  c = np.asarray(confusion, float)
  c = c / np.maximum(c.sum(1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(6, 5))
  im = ax.imshow(c, vmin=0, vmax=1, cmap="viridis")
  ax.set_xticks(range(len(labels)), labels, rotation=90)
  ax.set_yticks(range(len(labels)), labels)
  ax.set(xlabel="predicted", ylabel="true", title=title)
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
