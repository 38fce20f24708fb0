"""Weight matching (git re-basin; Ainsworth et al. 2023) on the nets' permutation spec.

Find, for every unit group of `nets.permutation_spec`, the permutation of model b's
units that best aligns b with a: coordinate descent over the groups in a seeded
random order; for group g, with every other group's current permutation applied to
b, maximise sum_axes <a's unit-u slice, b's unit-v slice> over assignments u -> v
(`scipy.optimize.linear_sum_assignment`); stop when a sweep changes nothing. The
spec knows every tensor a group's units index (kernels in and out, biases,
BatchNorm parameters and statistics, residual streams, a Dense reading a flattened
conv map), so this works for every jatlas net, ResNets included. Only params are
compared; every variable is permuted. Merging the aligned models (e.g. `average`)
then needs its BatchNorm statistics recomputed on data.

Usage:
  spec = nets.permutation_spec(net, a)
  perms = weight_matching(a, b, spec)           # {group: int array [U]}
  b_aligned = nets.permute(b, spec, perms)      # same function as b, closer to a
  midpoint = average([a, b_aligned])
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from jatlas.flat_names import flatten_variables
from jatlas.nets.symmetry import PermutationSpec, permute


def _unit_rows(t: np.ndarray, axis: int, blocks: int, size: int) -> np.ndarray:
  """[U, rest]: the slice of t that belongs to each unit on `axis`."""
  t = np.moveaxis(np.asarray(t, np.float64), axis, 0)
  t = t.reshape(blocks, size, *t.shape[1:])
  return np.moveaxis(t, 1, 0).reshape(size, -1)


def _similarity(flat_a, flat_b, group) -> np.ndarray:
  sim = np.zeros((group.size, group.size))
  for ax in group.axes:
    if ax.tensor.startswith("params/"):
      sim += _unit_rows(flat_a[ax.tensor], ax.axis, ax.blocks, group.size) @ _unit_rows(
          flat_b[ax.tensor], ax.axis, ax.blocks, group.size).T
  return sim


def weight_matching(a, b, spec: PermutationSpec, *, max_iter: int = 100,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """{group: perm} with `nets.permute(b, spec, perms)` aligned to a (module docstring)."""
  flat_a = {k: np.asarray(v) for k, v in flatten_variables(a).items()}
  flat_b = {k: np.asarray(v) for k, v in flatten_variables(b).items()}
  problems = [f"{k}: a {flat_a[k].shape} vs b {flat_b.get(k, np.zeros(0)).shape}"
              for k in flat_a if k not in flat_b or flat_a[k].shape != flat_b[k].shape]
  if problems:
    raise ValueError("weight_matching: a and b differ:\n  " + "\n  ".join(problems))
  perms = {g: np.arange(grp.size) for g, grp in spec.groups.items()}
  rng = np.random.default_rng(seed)
  for _ in range(max_iter):
    changed = False
    for g in rng.permutation(list(spec.groups)):
      others = {k: v for k, v in perms.items() if k != g}
      moved = {k: np.asarray(v) for k, v in flatten_variables(permute(b, spec, others)).items()}
      sim = _similarity(flat_a, moved, spec.groups[g])
      _, cols = linear_sum_assignment(sim, maximize=True)
      rows = np.arange(len(cols))
      if sim[rows, cols].sum() > sim[rows, perms[g]].sum() + 1e-9 * abs(sim).max():
        perms[g], changed = cols, True
    if not changed:
      break
  return perms
