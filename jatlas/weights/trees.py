"""Model trees: cluster models into trees, route each to its tree's expert (ProbeX, CVPR 2025).

Most models are fine-tunes of a few base models (model trees). The paper finds that
learning on weights works within a tree and suffers negative transfer across trees,
so ProbeX trains one expert per tree and routes every model to the expert of its
nearest tree centroid, R(X) = argmin_k ||X - X_k||_2, on raw flattened weights (a
mixture of experts).

  cluster_trees   Ward linkage of the flattened weights; the number of trees is given,
                  cut at a distance threshold, or (neither) cut at the largest ratio
                  between consecutive merge heights (`largest_gap_cut`).
  Router          nearest centroid of each tree's training models.
  TreeExperts     clusters (or takes the known trees), fits one `make_encoder` expert
                  per tree, and predicts each model with its routed tree's expert.
  matched_accuracy  agreement of tree labels up to renaming (one-to-one matching).

W is an array [R, ...] or a dict {flat tensor name: [R, ...]} (`jatlas.weights.inputs`);
distances use every tensor of W flattened and concatenated in name order, or one
tensor (`layer=`).

Usage:
  labels_R = cluster_trees(W)                          # Ward, cut at the largest gap
  router = Router().fit(W, labels_R); router.route(W_new)
  experts = TreeExperts("probex", layer="params/fc2/kernel", epochs=200)
  experts.fit(W, y_RK, task="multilabel", val=(W_v, y_VK))   # or trees=known_R
  experts.score(W_t, y_TK); experts.evaluate(W_t, y_TK)
  experts.routing_accuracy(W_t, trees_T)               # vs known trees, names matched
  TreeExperts("probex_zeroshot", layer="params/fc2/kernel").fit(
      W, y_R, class_embeddings=E_KD).predict(W_t, class_embeddings=E_new)
"""
from typing import Mapping

import numpy as np
from scipy.cluster import hierarchy
from scipy.optimize import linear_sum_assignment

from jatlas.weights import metrics
from jatlas.weights.encoder import make_encoder
from jatlas.weights.inputs import as_tensors, num_models, pick_layer

MIN_GAP_RATIO = 2.0  # below this, the largest merge-height ratio is noise: one tree


def flat_weights(W, layer: str | None = None) -> np.ndarray:
  """W -> w_RP float32: one tensor (`layer`) or all tensors of W in name order, flattened."""
  tensors = as_tensors(W)
  if layer is not None:
    _, w = pick_layer(tensors, layer)
    return w.reshape(len(w), -1)
  return np.concatenate([tensors[k].reshape(num_models(tensors), -1) for k in sorted(tensors)], 1)


def largest_gap_cut(heights_L: np.ndarray, min_ratio: float = MIN_GAP_RATIO) -> int:
  """Number of clusters from the merge heights of a linkage (ascending, L = R - 1 merges).

  Cuts between the two consecutive heights with the largest ratio, looking only at
  merges above the median height: in high dimensions Ward merges of noise all sit at
  about the same height, so a ratio (not an absolute gap) finds the step up to merging
  distinct trees, and families of trees that are far apart (different architectures)
  do not hide the trees within them. One cluster when no ratio reaches `min_ratio`.
  """
  h_L = np.sort(np.asarray(heights_L, np.float64))
  if len(h_L) < 2:
    return 1
  floor = max(np.median(h_L), np.finfo(np.float64).tiny)
  ratio_L = np.maximum(h_L[1:], floor) / np.maximum(h_L[:-1], floor)
  i = int(np.argmax(ratio_L))
  if ratio_L[i] < min_ratio:
    return 1
  return len(h_L) - i  # merges 0..i stay below the cut: R - (i + 1) clusters


def cluster_trees(W, n_trees: int | None = None, threshold: float | None = None, *,
                  layer: str | None = None) -> np.ndarray:
  """Ward clustering of models into trees -> labels_R in [0, K), numbered by first model.

  n_trees: cut into exactly this many; threshold: cut at this Ward merge height;
  neither: `largest_gap_cut` of the merge heights.
  """
  if n_trees is not None and threshold is not None:
    raise ValueError("pass n_trees or threshold, not both")
  w_RP = flat_weights(W, layer).astype(np.float64)
  r = len(w_RP)
  if n_trees is not None and not 1 <= n_trees <= r:
    raise ValueError(f"n_trees={n_trees}: expected 1 <= n_trees <= {r} (the number of models)")
  if r < 2:
    return np.zeros(r, np.int64)
  link_L4 = hierarchy.linkage(w_RP, method="ward")
  if threshold is not None:
    raw_R = hierarchy.fcluster(link_L4, threshold, criterion="distance")
  else:
    k = n_trees if n_trees is not None else largest_gap_cut(link_L4[:, 2])
    raw_R = hierarchy.fcluster(link_L4, k, criterion="maxclust")
  return first_seen_order(raw_R)


def first_seen_order(raw_R: np.ndarray) -> np.ndarray:
  """Relabels clusters 0, 1, ... in the order their first model appears."""
  _, first, inverse = np.unique(raw_R, return_index=True, return_inverse=True)
  rank = np.argsort(np.argsort(first))
  return rank[inverse].astype(np.int64)


def matched_accuracy(labels_R, trees_R) -> float:
  """Fraction of models whose label matches their known tree under the best one-to-one
  renaming of labels to trees (Hungarian matching; unmatched labels count as wrong)."""
  labels_R, trees_R = np.asarray(labels_R), np.asarray(trees_R)
  if labels_R.shape != trees_R.shape:
    raise ValueError(f"labels {labels_R.shape} and trees {trees_R.shape} must match")
  if not len(labels_R):
    return float("nan")
  la, li = np.unique(labels_R, return_inverse=True)
  tr, ti = np.unique(trees_R, return_inverse=True)
  count_LT = np.zeros((len(la), len(tr)), np.int64)
  np.add.at(count_LT, (li, ti), 1)
  rows, cols = linear_sum_assignment(-count_LT)
  return float(count_LT[rows, cols].sum() / len(labels_R))


class Router:
  """Nearest-centroid router: each tree's centroid is the mean of its training models."""

  def __init__(self, layer: str | None = None):
    self.layer = layer

  def fit(self, W, labels_R) -> "Router":
    w_RP = flat_weights(W, self.layer)
    labels_R = np.asarray(labels_R)
    if labels_R.shape != (len(w_RP),):
      raise ValueError(f"labels must be [R={len(w_RP)}] (one tree per model), got "
                       f"{labels_R.shape}")
    self.trees_ = np.unique(labels_R)
    self.centroids_KP = np.stack([w_RP[labels_R == t].mean(0) for t in self.trees_])
    return self

  def distances(self, W) -> np.ndarray:
    """d_RK: Euclidean distance of every model to every tree centroid."""
    if not hasattr(self, "centroids_KP"):
      raise RuntimeError("Router is not fitted: call fit(W, labels_R)")
    w_RP = flat_weights(W, self.layer).astype(np.float64)
    if w_RP.shape[1] != self.centroids_KP.shape[1]:
      raise ValueError(f"W flattens to {w_RP.shape[1]} weights per model, the router was "
                       f"fitted on {self.centroids_KP.shape[1]}")
    c_KP = self.centroids_KP.astype(np.float64)
    sq_RK = (w_RP ** 2).sum(1)[:, None] - 2 * w_RP @ c_KP.T + (c_KP ** 2).sum(1)[None]
    return np.sqrt(np.maximum(sq_RK, 0.0))

  def route(self, W) -> np.ndarray:
    """trees_R: the tree (a label given to fit) of each model's nearest centroid."""
    return self.trees_[np.argmin(self.distances(W), 1)]

  def accuracy(self, W, trees_R) -> float:
    """Routing accuracy against known trees, labels matched to trees one-to-one."""
    return matched_accuracy(self.route(W), trees_R)


def _take(tensors: Mapping[str, np.ndarray], idx) -> dict:
  return {k: v[idx] for k, v in tensors.items()}


def _scatter(r: int, outs: dict) -> np.ndarray:
  """[R, ...] from {tree: (rows, outputs of those rows)}."""
  first = next(iter(outs.values()))[1]
  out = np.zeros((r, *first.shape[1:]), first.dtype)
  for rows, o in outs.values():
    out[rows] = o
  return out


class TreeExperts:
  """One `make_encoder(encoder_name, **encoder_kw)` expert per model tree, with routing.

  n_trees / threshold: how `fit` cuts the clustering when no trees are given;
  route_layer: the tensor clustering and routing read (None: all of W).
  Array/dict in, array out, like an Encoder; keyword arguments of predict /
  decision_function / evaluate / score go to every expert (e.g. probex_zeroshot's
  class_embeddings).
  """

  def __init__(self, encoder_name: str, *, n_trees: int | None = None,
               threshold: float | None = None, route_layer: str | None = None, **encoder_kw):
    make_encoder(encoder_name, **encoder_kw)  # unknown names or arguments fail here, not in fit
    self.encoder_name, self.encoder_kw = encoder_name, encoder_kw
    self.n_trees, self.threshold, self.route_layer = n_trees, threshold, route_layer

  def fit(self, W, y, *, task: str = "multiclass", val=None, trees=None,
          **fit_kw) -> "TreeExperts":
    """Clusters W into trees (or takes `trees`, one label per model), then fits each
    tree's expert on its models; val=(W_v, y_v) models are routed to their experts
    (an expert whose tree gets none splits off its own validation models). In a
    multiclass task an expert validates on the classes it trained on, or, given
    class_embeddings (probex_zeroshot), on any row of them."""
    if task not in metrics.TASKS:
      raise ValueError(f"task={task!r}: expected one of {metrics.TASKS}")
    tensors = as_tensors(W)
    y = np.asarray(y)
    r = num_models(tensors)
    if len(y) != r:
      raise ValueError(f"W holds {r} models but y has {len(y)} rows")
    if trees is None:
      trees_R = cluster_trees(tensors, self.n_trees, self.threshold, layer=self.route_layer)
    else:
      trees_R = np.asarray(trees)
      if trees_R.shape != (r,):
        raise ValueError(f"trees must be [R={r}] (one tree label per model), got {trees_R.shape}")
    self.task_, self.router_ = task, Router(self.route_layer).fit(tensors, trees_R)
    self.train_trees_ = trees_R  # the tree of every training model
    val_split = self._route_val(val, fit_kw)
    self.experts_: dict = {}
    for t in self.router_.trees_:
      rows = np.flatnonzero(trees_R == t)
      self.experts_[t] = make_encoder(self.encoder_name, **self.encoder_kw).fit(
          _take(tensors, rows), y[rows], task=task, val=val_split(t, y[rows]), **fit_kw)
    if task == "multiclass":
      self.classes_ = np.unique(np.concatenate([e.classes_ for e in self.experts_.values()]))
    return self

  def _route_val(self, val, fit_kw: dict):
    """tree, its training targets -> its validation (W, y), or None (the expert splits)."""
    if val is None:
      return lambda t, y_fit: None
    tensors_V, y_V = as_tensors(val[0]), np.asarray(val[1])
    if len(y_V) != num_models(tensors_V):
      raise ValueError(f"val W holds {num_models(tensors_V)} models but val y has {len(y_V)}")
    trees_V = self.router_.route(tensors_V)

    def split(t, y_fit):
      keep = trees_V == t
      if self.task_ == "multiclass" and "class_embeddings" not in fit_kw:
        keep &= np.isin(y_V, y_fit)  # an expert's classes are those it saw in training
      rows = np.flatnonzero(keep)
      return (_take(tensors_V, rows), y_V[rows]) if len(rows) else None
    return split

  # ------------------------------------------------------------ routing

  def route(self, W) -> np.ndarray:
    """trees_R: the tree whose expert reads each model."""
    self._check_fitted()
    return self.router_.route(W)

  def routing_accuracy(self, W, trees_true) -> float:
    """Fraction of models routed to their known tree (tree names matched one-to-one)."""
    return matched_accuracy(self.route(W), trees_true)

  # ------------------------------------------------------------ predict

  def _per_expert(self, W, method: str, **kw):
    """(R, {tree: (rows, output of expert.method on those rows)})."""
    self._check_fitted()
    tensors = as_tensors(W)
    trees_R = self.router_.route(tensors)
    outs = {}
    for t in np.unique(trees_R):
      rows = np.flatnonzero(trees_R == t)
      outs[t] = rows, getattr(self.experts_[t], method)(_take(tensors, rows), **kw)
    return num_models(tensors), outs

  def _classes(self, outs, kw) -> np.ndarray:
    """Columns of a multiclass decision: the fitted classes, or with expert keyword
    arguments (new candidate classes) the classes the routed experts now score."""
    if not kw:
      return self.classes_
    return np.unique(np.concatenate([self.experts_[t].classes_ for t in outs]))

  def _decision(self, W, **kw) -> tuple[np.ndarray, np.ndarray | None]:
    """(outputs, multiclass columns or None): see decision_function."""
    r, outs = self._per_expert(W, "decision_function", **kw)
    if self.task_ != "multiclass":
      return _scatter(r, outs), None
    classes = self._classes(outs, kw)
    out_RK = np.full((r, len(classes)), -np.inf, np.float32)
    for t, (rows, o) in outs.items():
      cols = np.searchsorted(classes, self.experts_[t].classes_)
      out_RK[np.ix_(rows, cols)] = o
    return out_RK, classes

  def decision_function(self, W, **kw) -> np.ndarray:
    """Each model's output from its tree's expert: logits [R, K] or values [R]. In a
    multiclass task columns are `classes_`; classes an expert never saw score -inf."""
    return self._decision(W, **kw)[0]

  def predict(self, W, **kw) -> np.ndarray:
    """Each model's prediction by its tree's expert (labels, 0/1 [R, K] or values)."""
    return _scatter(*self._per_expert(W, "predict", **kw))

  def evaluate(self, W, y, **kw) -> dict:
    """Every metric of the task over all models, each predicted by its routed expert."""
    scores, classes = self._decision(W, **kw)
    y = np.asarray(y)
    if classes is not None:
      idx = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
      if (classes[idx] != y).any():
        raise ValueError(f"labels {sorted(set(y.tolist()) - set(classes.tolist()))[:5]} are "
                         f"not among the experts' classes ({classes.tolist()[:10]}...)")
      y = idx
    return metrics.task_metrics(self.task_, y, scores)

  def score(self, W, y, **kw) -> float:
    """The task's primary metric (accuracy, element-wise accuracy or Kendall tau)."""
    return self.evaluate(W, y, **kw)[metrics.PRIMARY[self.task_]]

  @property
  def n_trees_(self) -> int:
    self._check_fitted()
    return len(self.experts_)

  def _check_fitted(self):
    if not hasattr(self, "experts_"):
      raise RuntimeError("TreeExperts is not fitted: call fit(W, y, task=...)")


__all__ = ["flat_weights", "largest_gap_cut", "cluster_trees", "matched_accuracy", "Router",
           "TreeExperts"]
