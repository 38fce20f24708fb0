"""Figures of a zoo: how its members learned, per task (matplotlib Figure, no pyplot state).

Usage:
  plot_zoo_accuracy(zoo.table, "runs/digits/accuracy.png")
"""
import pandas as pd
from matplotlib.figure import Figure


def plot_zoo_accuracy(table: pd.DataFrame, path: str, metric: str = "test_bacc") -> None:
  """Left: `metric` over saved epochs (mean and range); right: final value per task."""
  ok = table[table.status == "ok"]
  fig = Figure(figsize=(11, 4))
  ax0, ax1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
  by_epoch = ok.groupby("epoch")[metric]
  ax0.plot(by_epoch.mean().index, by_epoch.mean(), "o-", label="mean")
  ax0.fill_between(by_epoch.min().index, by_epoch.min(), by_epoch.max(), alpha=0.3, label="range")
  ax0.set(xlabel="epoch", ylabel=metric, title=f"{ok.member.nunique()} members")
  ax0.legend()
  final = ok[ok.final]
  tasks = sorted(final.task.unique(), key=lambda t: final[final.task == t].task_index.iloc[0])
  ax1.boxplot([final[final.task == t][metric] for t in tasks], showfliers=True)
  ax1.set_xticks(range(1, len(tasks) + 1), tasks, rotation=45, ha="right")
  ax1.set(ylabel=f"final {metric}", title="per task")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
