"""Canonical hidden-unit order (and sign, and scale) for many models at once.

Two nets that differ only by a relabelling of their hidden units (and, where the
group's `flip` allows it, by unit signs) compute the same function but have
different weight tensors. `canonicalise` maps every such copy to one
representative, group by group in the spec's forward order
(`jatlas.nets.permutation_spec`):

  1. sign (groups with `flip`, `flip=True`): each unit is multiplied by the sign
     of the sum of its sign-carrying incoming entries (the group's "out" axes:
     kernel output column and bias), so that sum is >= 0 (a unit whose sum is
     exactly 0, e.g. an all-zero unit, keeps its sign).
  2. scale (groups with `rescale`, only with `rescale=True`): each unit's "out"
     entries are divided by their L2 norm and its "in" entries multiplied by it,
     so every unit's incoming vector has norm 1 (units that are exactly zero stay).
  3. order: units sorted by decreasing L2 norm of their incoming entries (the
     "out" and "perm" axes; after step 2 instead by the sum of their "out"
     entries), ties by decreasing norm of their outgoing entries (the "in" axes),
     remaining exact ties by the current index (stable sort).

Keys are float64 sums over each unit's entries, taken with the signs and scales
already chosen for the groups before it, so two permuted and flipped copies get
the same keys (up to float64 rounding) and the same result. Signs and scales need
the groups that feed a group to come earlier in forward order, true of every
jatlas net (residual streams, whose producers read later groups, are ReLU: no
flips; their rescaling is keyed by their BatchNorm entries alone). Models whose
units tie on every key are canonical only up to those ties. Tensors not in the
spec (the input layer's input axis, logits, the head's bias) pass through.

How: every tensor the spec names is reduced once (sums and sums of squares over
its non-unit axes, [R, U] or [R, U_a, U_b]); the groups' signs, scales and orders
come from those small arrays; then each tensor is gathered once, model by model
(contiguous takes are several times faster than one fancy-indexed gather).

Usage:
  spec = nets.permutation_spec(net, variables)
  tensors_R = {n: zoo.stacked(n, rows) for n in zoo.names}
  canon_R = canonicalise(tensors_R, spec)                 # same keys and shapes
  canon_R, perms = canonicalise(tensors_R, spec, return_perms=True)
  unit_axes(spec)["params/fc1/kernel"]  # ((group, Axis), ...) of that tensor
  # perms[group]: GroupPerm(perm [R, U], sign [R, U], scale [R, U]) applied to
  # each model, in the convention of nets.permute
"""
from typing import Mapping

import numpy as np

from jatlas.nets.symmetry import Axis, GroupPerm, PermutationSpec

Entry = tuple[str, Axis]  # (group name, axis) on one tensor


def canonicalise(tensors_R: Mapping[str, np.ndarray], spec: PermutationSpec, *,
                 flip: bool = True, rescale: bool = False, return_perms: bool = False):
  """{name: [R, *shape]} -> the same tensors with every model's units in canonical
  order (module docstring); with return_perms also {group: GroupPerm of [R, U]}."""
  tensors = {name: np.asarray(t) for name, t in tensors_R.items()}
  n_models = _check(tensors, spec)
  layout = unit_axes(spec)
  reduced = {t: _reduce(tensors[t], entries, spec) for t, entries in layout.items()}
  ones = {g: np.ones((n_models, grp.size)) for g, grp in spec.groups.items()}
  sign, scale, perm = dict(ones), dict(ones), {}
  for g, group in spec.groups.items():
    stats = _UnitStats(reduced, layout, g, sign, scale)
    if flip and group.flip:
      sign[g] = np.where(stats.total(("out",), 1) < 0, -1.0, 1.0)
    scaled = rescale and group.rescale
    if scaled:
      norm_RU = np.sqrt(stats.total(("out",), 2))
      scale[g] = np.where(norm_RU > 0, 1 / np.where(norm_RU > 0, norm_RU, 1), 1.0)
    perm[g] = _order(_UnitStats(reduced, layout, g, sign, scale), group.size, scaled)
  out = dict(tensors)
  for t, entries in layout.items():
    out[t] = _apply(tensors[t], entries, spec, perm, sign, scale)
  if not return_perms:
    return out
  rows = np.arange(n_models)[:, None]
  perms = {g: GroupPerm(p, sign[g][rows, p].astype(np.float32),
                        scale[g][rows, p].astype(np.float32)) for g, p in perm.items()}
  return out, perms


def _check(tensors_R: dict, spec: PermutationSpec) -> int:
  """Number of models R; raises naming every tensor the spec needs but lacks."""
  problems, rows = [], {t.shape[0] for t in tensors_R.values() if t.ndim}
  for group in spec.groups.values():
    for ax in group.axes:
      t = tensors_R.get(ax.tensor)
      want = ax.blocks * group.size
      if t is None:
        problems.append(f"{ax.tensor} is missing")
      elif t.ndim <= ax.axis + 1 or t.shape[ax.axis + 1] != want:
        problems.append(f"{ax.tensor} has shape {t.shape}, expected [R, ...] with "
                        f"{want} entries on axis {ax.axis + 1} (group {group.name!r})")
  if len(rows) > 1:
    problems.append(f"tensors disagree on the number of models (leading axis): "
                    f"{sorted(rows)}")
  if problems:
    raise ValueError(f"canonicalise ({spec.net}): {'; '.join(problems)}")
  return rows.pop() if rows else 0


def unit_axes(spec: PermutationSpec) -> dict[str, tuple[Entry, ...]]:
  """tensor -> its unit axes as (group name, Axis), in axis order; tensors the spec
  does not name have none."""
  layout: dict[str, list[Entry]] = {}
  for g, group in spec.groups.items():
    for ax in group.axes:
      layout.setdefault(ax.tensor, []).append((g, ax))
  return {t: tuple(sorted(e, key=lambda entry: entry[1].axis)) for t, e in layout.items()}


def split_unit_shape(t_R, entries, spec) -> tuple[list[int], list[int]]:
  """Shape of t_R with each unit axis split into (blocks, U); positions of the U's."""
  by_axis = {ax.axis: (ax, spec.groups[g].size) for g, ax in entries}
  shape, unit_dims = [t_R.shape[0]], []
  for d, n in enumerate(t_R.shape[1:]):
    if d in by_axis:
      ax, size = by_axis[d]
      shape += [ax.blocks, size]
      unit_dims.append(len(shape) - 1)
    else:
      shape.append(n)
  return shape, unit_dims


def _reduce(t_R: np.ndarray, entries, spec) -> dict[int, np.ndarray]:
  """{1: sums, 2: sums of squares} over the non-unit axes: [R, U_e1, (U_e2)] float64."""
  shape, unit_dims = split_unit_shape(t_R, entries, spec)
  v = t_R.reshape(shape)
  other = tuple(d for d in range(1, len(shape)) if d not in unit_dims)
  return {1: v.sum(other, dtype=np.float64),
          2: np.square(v).sum(other, dtype=np.float64)}


def _role_factor(f_RU: np.ndarray, role: str) -> np.ndarray:
  return {"out": f_RU, "in": 1 / f_RU, "perm": np.ones_like(f_RU)}[role]


class _UnitStats:
  """Per-unit sums over one group's axes, with every group's current sign and scale."""

  def __init__(self, reduced, layout, group: str, sign, scale):
    self.reduced, self.layout, self.group = reduced, layout, group
    self.factor = {g: sign[g] * scale[g] for g in sign}

  def total(self, roles, power: int) -> np.ndarray:
    """[R, U]: sum over the group's axes with `roles` of entries ** power."""
    total_RU = np.zeros(self.factor[self.group].shape)
    for t, entries in self.layout.items():
      for k, (g, ax) in enumerate(entries):
        if g == self.group and ax.role in roles:
          total_RU = total_RU + self._one(t, entries, k, power)
    return total_RU

  def _one(self, t: str, entries, k: int, power: int) -> np.ndarray:
    """[R, U] of entry k of tensor t: the other unit axes summed with their factors."""
    dims = "abcdefgh"[:len(entries)]
    factors = [_role_factor(self.factor[g], ax.role) ** power for g, ax in entries]
    inputs = ",".join(["r" + dims] + ["r" + d for d in dims])
    return np.einsum(f"{inputs}->r{dims[k]}", self.reduced[t][power], *factors)


def _order(stats: _UnitStats, size: int, scaled: bool) -> np.ndarray:
  """perm [R, U]: new unit u is old unit perm[:, u] (module docstring, step 3)."""
  read_RU = stats.total(("in",), 2)
  if scaled:
    # incoming norms are all 1 now; the "out" entries' sum is scale-free and, unlike
    # "perm" and "in" entries, never reads a later group (residual streams)
    made_RU = stats.total(("out",), 1)
  else:
    made_RU = stats.total(("out", "perm"), 2)
  index_RU = np.broadcast_to(np.arange(size), read_RU.shape)
  # np.lexsort: the last key is primary; negated keys sort decreasing
  return np.lexsort((index_RU, -read_RU, -made_RU), axis=-1)


def _apply(t_R: np.ndarray, entries, spec, perm, sign, scale) -> np.ndarray:
  """t_R with every unit axis gathered by its group's perm and scaled by its factor."""
  shape, unit_dims = split_unit_shape(t_R, entries, spec)
  v = t_R.reshape(shape)
  rows = np.arange(len(v))[:, None]
  factor = np.ones([len(v)] + [1] * (len(shape) - 1), v.dtype)
  for (g, ax), d in zip(entries, unit_dims):
    f = _role_factor(sign[g][rows, perm[g]] * scale[g][rows, perm[g]], ax.role)
    f_shape = [len(v)] + [1] * (len(shape) - 1)
    f_shape[d] = f.shape[1]
    factor = factor * f.reshape(f_shape).astype(v.dtype)
  scaled = bool(np.any(factor != 1))
  out = np.empty_like(v)
  for r in range(len(v)):  # per model: contiguous takes beat one fancy-indexed gather
    x = v[r]
    for i, ((g, _), d) in enumerate(zip(entries, unit_dims)):
      x = np.take(x, perm[g][r], axis=d - 1, out=out[r] if i == len(entries) - 1 else None)
    if scaled:
      out[r] *= factor[r]
  return out.reshape(t_R.shape)
