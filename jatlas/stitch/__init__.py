"""Model stitching: stitch layers with shape adapters, direct (least-squares)
matching, stitches trained between frozen nets (many at once, one program per
receiver tap), stitching matrices over tap pairs and model pairs, sanity controls.

Usage:
  from jatlas import stitch
  res = stitch.train_stitches(sender, vs, receiver, vr, "conv2", "conv2", x, y,
                              x_test=x_t, y_test=y_t, seeds=(0, 1), init="direct")
  models, controls = stitch.with_controls({"a": (net, va), "b": (net, vb)}, ("a", "b"), x)
  res = stitch.stitch_matrices(models, [("a", "b"), *controls], x, y, x_t, y_t, kernels=(1, 3))
"""
from jatlas.stitch.controls import random_init, with_controls
from jatlas.stitch.direct import direct_match
from jatlas.stitch.layer import Stitch, adapter
from jatlas.stitch.population import Job, tap_arrays, train_jobs
from jatlas.stitch.train import stitched_logits, train_stitches
from jatlas.stitch.matrix import (plot_stitch_matrix, receiver_accuracy, stitch_matrices,
                                  stitch_matrix, triangle_summary)
