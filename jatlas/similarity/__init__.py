"""Representational similarity with calibration: CKA (linear, RBF, debiased,
minibatch), the CCA family, Procrustes and mutual k-NN, all as metric(x [n, d1],
y [n, d2]) -> score; a permutation null and bootstrap interval for any of them;
layer x layer and population matrices from the nets' taps.

Usage:
  from jatlas import similarity as sim
  sim.linear_cka(x_ND, y_NE, debiased=True)
  sim.calibrated(sim.linear_cka, x_ND, y_NE, jax.random.key(0))   # score, null, p, CI
  m, rows, cols = sim.layer_matrix(sim.tap_features(net, v, x, reduce="mean"))
"""
from jatlas.similarity.calibrate import bootstrap_ci, calibrated, permutation_null
from jatlas.similarity.cca import canonical_correlations, mean_cca, pwcca, svcca, svd_dims
from jatlas.similarity.cka import center_gram, cka, gram_linear, gram_rbf, linear_cka, rbf_cka
from jatlas.similarity.geometry import mutual_knn, procrustes_distance
from jatlas.similarity.features import as_features, centred_unit
from jatlas.similarity.matrix import layer_matrix, population_matrix, tap_features
from jatlas.similarity.minibatch import accumulate, batch_hsic, minibatch_cka

METRICS = {"linear_cka": linear_cka, "rbf_cka": rbf_cka, "mean_cca": mean_cca,
           "svcca": svcca, "pwcca": pwcca, "procrustes": procrustes_distance,
           "mutual_knn": mutual_knn}
