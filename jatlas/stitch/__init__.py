"""Model stitching: stitch layers with shape adapters, direct (least-squares)
matching, and stitches trained between frozen nets as one population.

Usage:
  from jatlas import stitch
  res = stitch.train_stitches(sender, vs, receiver, vr, "conv2", "conv2", x, y,
                              x_test=x_t, y_test=y_t, seeds=(0, 1), init="direct")
"""
from jatlas.stitch.direct import direct_match
from jatlas.stitch.layer import Stitch, adapter
from jatlas.stitch.train import stitched_logits, train_stitches
from jatlas.stitch.matrix import plot_stitch_matrix, stitch_matrix
