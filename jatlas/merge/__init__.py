"""Model merging on plain pytrees: soups, slerp, task arithmetic, TIES, DARE, and merged
files that record their recipe.

Usage:
  from jatlas import merge
  soup = merge.average([m0, m1]); mid = merge.slerp(a, b, 0.5)
  ta = merge.task_arithmetic(base, [ft_a, ft_b], lam=0.5)
  t = merge.ties(base, [ft_a, ft_b], density=0.2); d = merge.dare(base, fts, 0.9, key)
  perms = merge.weight_matching(a, b, spec); b_aligned = nets.permute(b, spec, perms)
  merge.save_merged("m.safetensors", t, method="ties", parents=["a", "b"], base="base")
  merged = merge.recompute_batch_stats(net, merge.average([va, vb]), x_train)  # fresh BN stats
  logits = merge.feature_average(net, [va, vb], x, 0.5)      # stage-by-stage feature mix
  res = merge.train_router(net, [va, vb], x, y, depths=2)    # learned per-stage gates
"""
from jatlas.merge.batchnorm import recompute_batch_stats
from jatlas.merge.feature_mix import feature_average, feature_average_sweep
from jatlas.merge.recipe import read_recipe, save_merged
from jatlas.merge.routing import init_gates, routed_logits, routing_experts, train_router
from jatlas.merge.soups import average, slerp
from jatlas.merge.task_vectors import dare, task_arithmetic, task_vector, ties
from jatlas.merge.weight_matching import weight_matching
