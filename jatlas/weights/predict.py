"""Predict what a model learned from its weights with a linear probe (scikit-learn).

Usage:
  train_R, test_R = member_split(task_R, test_fraction=0.3, seed=0)
  res = task_identification(X_RF, task_R, train_R, test_R)   # res["accuracy"], res["chance"]
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def member_split(labels_R, test_fraction: float, seed: int):
  """Stratified train/test indices over models (one row per model)."""
  idx = np.arange(len(labels_R))
  return train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels_R)


def task_identification(X_RF, labels_R, train_R, test_R, *, C: float = 1.0) -> dict:
  """Standardised multinomial logistic regression: test accuracy and confusion."""
  labels_R = np.asarray(labels_R)
  clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
  clf.fit(X_RF[train_R], labels_R[train_R])
  pred = clf.predict(X_RF[test_R])
  classes = np.unique(labels_R)
  counts = np.bincount(np.searchsorted(classes, labels_R[train_R]), minlength=len(classes))
  return {
      "accuracy": float(np.mean(pred == labels_R[test_R])),
      "chance": float(counts.max() / counts.sum()),  # majority class of the training split
      "n_train": int(len(train_R)), "n_test": int(len(test_R)),
      "n_features": int(X_RF.shape[1]),
      "confusion": confusion_matrix(labels_R[test_R], pred, labels=classes).tolist(),
  }
