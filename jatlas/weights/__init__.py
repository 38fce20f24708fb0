"""Learning on weights: features of zoo members and predictors over them.

Usage:
  X_RF, names = statnn_features({n: zoo.stacked(n, rows) for n in zoo.names})
  result = task_identification(X_RF, labels_R, train_R, test_R)
"""
from jatlas.weights.features import statnn_features
from jatlas.weights.predict import member_split, task_identification

__all__ = ["statnn_features", "member_split", "task_identification"]
