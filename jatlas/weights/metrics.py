"""Metrics of predictions from weights, as the papers report them.

multiclass: accuracy, balanced accuracy (mean per-class recall).
multilabel: element-wise accuracy at threshold 0.5 (ProbeX's "accuracy": chance is
  about 50% with half the labels on), exact match (all labels right) and mAP
  (mean over labels of average precision, labels with no positive skipped).
regression: Kendall tau (the Small CNN Zoo / NFN metric), R^2 and MSE.

Usage:
  m = task_metrics("multiclass", y_R, scores_RK)   # {"accuracy": ..., ...}
  PRIMARY["multilabel"]                            # "elementwise_accuracy"
"""
import numpy as np
from scipy.stats import kendalltau
from sklearn.metrics import average_precision_score, balanced_accuracy_score, r2_score

TASKS = ("multiclass", "multilabel", "regression")
PRIMARY = {"multiclass": "accuracy", "multilabel": "elementwise_accuracy",
           "regression": "kendall_tau"}


def multiclass_metrics(y_R, scores_RK) -> dict:
  """y_R: class indices; scores_RK: logits or probabilities."""
  y_R, pred_R = np.asarray(y_R), np.argmax(scores_RK, -1)
  return {"accuracy": float(np.mean(pred_R == y_R)),
          "balanced_accuracy": float(balanced_accuracy_score(y_R, pred_R))}


def multilabel_metrics(y_RK, logits_RK) -> dict:
  """y_RK: 0/1 labels; logits_RK: logits (a label is on where the logit is > 0)."""
  y_RK, logits_RK = np.asarray(y_RK) > 0.5, np.asarray(logits_RK)
  hit_RK = (logits_RK > 0) == y_RK
  ap = [average_precision_score(y_RK[:, k], logits_RK[:, k])
        for k in range(y_RK.shape[1]) if y_RK[:, k].any()]
  return {"elementwise_accuracy": float(hit_RK.mean()),
          "exact_match": float(hit_RK.all(1).mean()),
          "mAP": float(np.mean(ap)) if ap else float("nan")}


def regression_metrics(y_R, pred_R) -> dict:
  y_R, pred_R = np.asarray(y_R, float).ravel(), np.asarray(pred_R, float).ravel()
  tau = kendalltau(y_R, pred_R).statistic if len(y_R) > 1 else np.nan
  return {"kendall_tau": float(tau), "r2": float(r2_score(y_R, pred_R)),
          "mse": float(np.mean((y_R - pred_R) ** 2))}


def task_metrics(task: str, y, scores) -> dict:
  """All metrics of `task` (one of TASKS)."""
  if task not in TASKS:
    raise ValueError(f"task={task!r}: expected one of {TASKS}")
  fn = {"multiclass": multiclass_metrics, "multilabel": multilabel_metrics,
        "regression": regression_metrics}[task]
  return fn(y, scores)
