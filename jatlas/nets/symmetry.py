"""Hidden-unit symmetries of the staged nets: permutations, sign flips, rescaling.

Relabelling the hidden units of a layer (a Dense's outputs, a conv's channels) and the
input rows of the layers that read them leaves the net's function unchanged.
`permutation_spec(net, variables)` derives, from the net's stage declarations
(jatlas.nets.stages) and the variables' shapes, which axes of which tensors move
together, and which other exact symmetries each group of units has. One generic walk
covers every net; no net has a hand-written table. Input channels and logits are
never permuted.

The spec (frozen dataclasses, hashable, so it can be a static argument of jit):
  PermutationSpec.net      the net's class name
  PermutationSpec.groups   {name: Group}, in forward order of the layers that make them
  Group.name     the first tap whose output carries the units ("conv1", "fc1", "stem";
                 "block2" = the residual stream of the ResNet stage that starts at
                 block2), else the path of the layer that makes them ("block1/conv1":
                 the units inside a block)
  Group.size     U, the number of units
  Group.axes     tuple of Axis: every tensor axis indexed by the units, forward order
  Group.flip     multiplying units by -1 is exact: every op between the units'
                 producers and their readers is odd (tanh, identity, avg pool, mean,
                 flatten; not relu, sigmoid, gelu, max pool)
  Group.rescale  multiplying units by a > 0 is exact: every such op is positively
                 homogeneous (relu, leaky_relu, identity, avg and max pool, mean)
  Axis.tensor    flat variable name, collection first: "params/conv1/kernel",
                 "batch_stats/block1/bn1/mean"
  Axis.axis      a non-negative axis of that tensor
  Axis.role      "out": where the units are made, scaled with them (sign * scale):
                 the output axis of the layer's kernel and its bias or, where a
                 BatchNorm follows, that BN's scale and bias;
                 "in": the input axis of a kernel that reads the units, scaled
                 inversely (1 / (sign * scale));
                 "perm": only permuted: the kernel output axis of a layer followed
                 by a BatchNorm, and BN mean and var
  Axis.blocks    B: the axis has B * U entries and entry b * U + u belongs to unit u.
                 B is the number of spatial positions where a Dense reads a flattened
                 (H, W, C) map (LeNet5 fc1, CNN1D head), else 1.
A ResNet stage's residual stream (the stage's block outputs, the BN outputs added to
it, identity shortcuts, projection conv/BN) is one group: the shortcut add merges
the groups of its two summands.

Transforms: `perms` maps group names to `GroupPerm(perm, sign, scale)` (arrays of shape
(U,); int, +-1, > 0) or to a bare perm array (sign = scale = 1); groups left out stay.
New unit u is old unit perm[u] times sign[u] * scale[u]:
  out axes:  a'[..., b*U + u, ...] = sign[u] * scale[u] * a[..., b*U + perm[u], ...]
  in axes:   a'[..., b*U + u, ...] = a[..., b*U + perm[u], ...] / (sign[u] * scale[u])
  perm axes: a'[..., b*U + u, ...] = a[..., b*U + perm[u], ...]
The function is unchanged for any perm, and for signs and scales where the group's
`flip` / `rescale` allow them; `permute` applies whatever it is given.

Usage:
  spec = permutation_spec(net, variables)
  print(spec)                                  # one line per group
  print(spec.summary())                        # ... and every axis
  perms = random_permutation(spec, jax.random.key(0))
  new_variables = permute(variables, spec, perms)  # same logits
"""
import dataclasses
import difflib
import functools
import math
import types
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict, freeze

from jatlas.flat_names import flatten_variables, unflatten_variables
from jatlas.nets.stages import Linear, Norm, Residual, StagedNet

ROLES = ("out", "in", "perm")


@dataclasses.dataclass(frozen=True)
class Axis:
  """One tensor axis indexed by a group's units (see the module docstring)."""
  tensor: str
  axis: int
  role: str
  blocks: int = 1

  def __post_init__(self):
    if self.role not in ROLES or self.axis < 0 or self.blocks < 1:
      raise ValueError(f"Axis {self.tensor}: role must be one of {ROLES}, axis >= 0 and "
                       f"blocks >= 1, got role={self.role!r}, axis={self.axis}, "
                       f"blocks={self.blocks}")

  def __str__(self):
    blocks = "" if self.blocks == 1 else f" x{self.blocks}"
    return f"{self.tensor}[{self.axis}]{blocks} {self.role}"


@dataclasses.dataclass(frozen=True)
class Group:
  """The units of one hidden layer (or one residual stream) and what moves with them."""
  name: str
  size: int
  axes: tuple[Axis, ...]
  flip: bool
  rescale: bool

  def __repr__(self):
    allows = [what for what, ok in (("flip", self.flip), ("rescale", self.rescale)) if ok]
    parts = [f"{self.size} units", ", ".join(allows) or "permutation only"]
    for role, verb in (("out", "made by"), ("in", "read by")):
      layers = {}
      for a in self.axes:
        if a.role == role:
          layer = a.tensor.split("/", 1)[1].rsplit("/", 1)[0]
          layers[layer] = f"{layer} (x{a.blocks} blocks)" if a.blocks > 1 else layer
      parts.append(f"{verb} {', '.join(layers.values())}")
    return f"{self.name}: {'; '.join(parts)}"

  def summary(self) -> str:
    """Every axis, one per line."""
    return "\n".join([f"{self!r}", *(f"    {a}" for a in self.axes)])


@dataclasses.dataclass(frozen=True)
class PermutationSpec:
  """The hidden-unit symmetry groups of one net (see the module docstring)."""
  net: str
  groups: Mapping[str, Group]

  def __post_init__(self):
    object.__setattr__(self, "groups", types.MappingProxyType(dict(self.groups)))

  def __hash__(self):
    return hash((self.net, tuple(self.groups.values())))

  def __eq__(self, other):
    return (isinstance(other, PermutationSpec) and self.net == other.net
            and tuple(self.groups.items()) == tuple(other.groups.items()))

  def __repr__(self):
    lines = [f"PermutationSpec({self.net}, {len(self.groups)} groups:"]
    lines += [f"  {group!r}" for group in self.groups.values()]
    return "\n".join(lines) + ")"

  def summary(self) -> str:
    """The groups with every axis they index."""
    return "\n".join([f"PermutationSpec({self.net}):",
                      *(f"  {g.summary()}" for g in self.groups.values())])


class GroupPerm(NamedTuple):
  """New unit u = old unit perm[u] times sign[u] * scale[u]; each of shape (U,)."""
  perm: Any
  sign: Any
  scale: Any


# ------------------------------------------------------------------ the walk

FIXED = 0  # the group of the input channels and of the logits: never permuted


@dataclasses.dataclass(frozen=True)
class _Flow:
  """The units on the feature axis of the running tensor."""
  group: int
  producers: tuple[int, ...] = ()  # indices of the "out" axes that make them
  flip: bool = True  # every op since the producers keeps sign flips
  rescale: bool = True  # ... and positive rescaling
  flat: bool = False  # flattened with the spatial positions: feature s*U + u


class _Builder:
  """Groups (a union-find: residual adds merge groups) and the axes they index."""

  def __init__(self, shapes: dict[str, tuple[int, ...]]):
    self.shapes = shapes
    self.parent, self.size, self.layer, self.tap = [FIXED], [0], [None], [None]
    self.flags = [(True, True)]
    self.axes: list[list] = []  # [group, tensor, axis, role, blocks]
    self.problems: list[str] = []

  def find(self, g: int) -> int:
    while self.parent[g] != g:
      self.parent[g] = g = self.parent[self.parent[g]]
    return g

  def new_group(self, size: int, layer: str) -> int:
    self.parent.append(len(self.parent))
    self.size.append(size)
    self.layer.append(layer)
    self.tap.append(None)
    self.flags.append((True, True))
    return len(self.parent) - 1

  def union(self, a: int, b: int) -> int:
    ra, rb = self.find(a), self.find(b)
    if ra == rb:
      return ra
    if FIXED not in (ra, rb) and self.size[ra] != self.size[rb]:
      self.problems.append(f"an add merges {self.layer[ra]!r} ({self.size[ra]} units) "
                           f"with {self.layer[rb]!r} ({self.size[rb]} units)")
    root, child = min(ra, rb), max(ra, rb)  # the earlier group; FIXED absorbs all
    self.parent[child] = root
    taps = [t for t in (self.tap[root], self.tap[child]) if t is not None]
    self.tap[root] = min(taps) if taps else None
    return root

  def name_tap(self, g: int, index: int, tap: str) -> None:
    r = self.find(g)
    if r != FIXED and self.tap[r] is None:
      self.tap[r] = (index, tap)

  def shape(self, tensor: str, required: bool = True):
    if tensor not in self.shapes and required:
      close = difflib.get_close_matches(tensor, list(self.shapes), n=1)
      self.problems.append(f"{tensor} is missing"
                           + (f" (did you mean {close[0]!r}?)" if close else ""))
    return self.shapes.get(tensor)

  def blocks(self, flow: _Flow, tensor: str, axis: int) -> int:
    length, size = self.shapes[tensor][axis], self.size[self.find(flow.group)]
    blocks = length // size if flow.flat else 1
    if blocks * size != length:
      self.problems.append(f"{tensor} axis {axis} has {length} entries, expected "
                           f"{'a multiple of ' if flow.flat else ''}{size} units")
    return blocks

  def add(self, flow: _Flow, tensor: str, axis: int, role: str) -> int:
    self.axes.append([flow.group, tensor, axis, role, self.blocks(flow, tensor, axis)])
    return len(self.axes) - 1

  def read(self, flow: _Flow, tensor: str, axis: int) -> None:
    """A layer reads the flow's units on `axis` of `tensor`."""
    if self.find(flow.group) == FIXED:
      return
    self.add(flow, tensor, axis, "in")
    flip, rescale = self.flags[flow.group]
    self.flags[flow.group] = (flip and flow.flip, rescale and flow.rescale)


def _linear(b: _Builder, path: str, flow: _Flow) -> _Flow:
  kernel = f"params/{path}/kernel"
  shape = b.shape(kernel)
  if shape is None or len(shape) < 2:
    if shape is not None:
      b.problems.append(f"{kernel} has shape {shape}, expected (..., in, out)")
    return _Flow(FIXED)
  b.read(flow, kernel, len(shape) - 2)
  made = _Flow(b.new_group(shape[-1], path))
  producers = [b.add(made, kernel, len(shape) - 1, "out")]
  if b.shape(f"params/{path}/bias", required=False) is not None:
    producers.append(b.add(made, f"params/{path}/bias", 0, "out"))
  return dataclasses.replace(made, producers=tuple(producers))


def _norm(b: _Builder, path: str, flow: _Flow) -> _Flow:
  """A BatchNorm remakes the units: its scale and bias carry signs and scales."""
  tensors = [f"params/{path}/scale", f"params/{path}/bias",
             f"batch_stats/{path}/mean", f"batch_stats/{path}/var"]
  missing = [t for t in tensors if b.shape(t) is None]
  if b.find(flow.group) == FIXED or missing:
    return _Flow(FIXED if missing else flow.group, flat=flow.flat)
  for i in flow.producers:
    b.axes[i][3] = "perm"
  out = tuple(b.add(flow, t, 0, "out") for t in tensors[:2])
  for t in tensors[2:]:
    b.add(flow, t, 0, "perm")
  return _Flow(flow.group, out, flat=flow.flat)


def _walk(b: _Builder, ops, flow: _Flow, prefix: str) -> _Flow:
  for op in ops:
    if isinstance(op, Linear):
      flow = _linear(b, prefix + op.name, flow)
    elif isinstance(op, Norm):
      flow = _norm(b, prefix + op.name, flow)
    elif isinstance(op, Residual):
      inner = f"{prefix}{op.name}/"
      y, s = _walk(b, op.branch, flow, inner), _walk(b, op.shortcut, flow, inner)
      merged = _Flow(b.union(y.group, s.group), y.producers + s.producers,
                     y.flip and s.flip, y.rescale and s.rescale, y.flat or s.flat)
      flow = _walk(b, op.post, merged, inner)
    elif hasattr(op, "odd") and hasattr(op, "homogeneous"):
      flow = dataclasses.replace(flow, flip=flow.flip and op.odd,
                                 rescale=flow.rescale and op.homogeneous,
                                 flat=flow.flat or op.flattens)
    else:
      raise TypeError(f"no symmetry rule for op {op!r} (known: Linear, Norm, Residual, "
                      f"ops with `odd` and `homogeneous`)")
  return flow


def _spec(b: _Builder, net: str) -> PermutationSpec:
  members: dict[int, list[int]] = {}
  for g in range(1, len(b.parent)):
    if (r := b.find(g)) != FIXED:
      members.setdefault(r, []).append(g)
  groups = {}
  for r, ids in sorted(members.items()):
    name = b.tap[r][1] if b.tap[r] else b.layer[r]
    if name in groups:
      raise ValueError(f"permutation_spec: {net} has two groups named {name!r}")
    axes = tuple(Axis(t, axis, role, blocks) for g, t, axis, role, blocks in b.axes
                 if b.find(g) == r)
    groups[name] = Group(name, b.size[r], axes, all(b.flags[g][0] for g in ids),
                         all(b.flags[g][1] for g in ids))
  return PermutationSpec(net, groups)


def _flat_shapes(variables) -> dict[str, tuple[int, ...]]:
  return {k: tuple(v.shape) for k, v in flatten_variables(variables).items()}


def permutation_spec(model: StagedNet, variables) -> PermutationSpec:
  """The hidden-unit symmetry groups of `model` with `variables` (one member's
  {"params": ..., "batch_stats": ...}; arrays or jax.ShapeDtypeStruct)."""
  if not isinstance(model, StagedNet):
    raise TypeError(f"permutation_spec needs a jatlas.nets.StagedNet, got "
                    f"{type(model).__name__}")
  b = _Builder(_flat_shapes(variables))
  flow = _Flow(FIXED)
  for i, stage in enumerate(model.stages()):
    flow = _walk(b, stage.ops, flow, "")
    b.name_tap(flow.group, i, stage.name)
  b.union(flow.group, FIXED)  # the logits
  if b.problems:
    raise ValueError(f"permutation_spec: the variables ({len(b.shapes)} tensors) do not "
                     f"fit {type(model).__name__}: {'; '.join(b.problems)}")
  return _spec(b, type(model).__name__)


# ----------------------------------------------------------- transforms

def random_permutation(spec: PermutationSpec, key, *, flip: bool = True,
                       rescale: bool = True, scale_range=(0.5, 2.0)) -> dict[str, GroupPerm]:
  """Per group a uniform permutation, random signs where `spec` allows flips, and
  log-uniform scales in `scale_range` where it allows rescaling (else ones)."""
  lo, hi = (float(s) for s in scale_range)
  return _draw(spec, key, flip, rescale, lo, hi)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4, 5))
def _draw(spec, key, flip, rescale, lo, hi):
  # jitted: eager jax.random.permutation compiles several ops per group size
  perms = {}
  for i, (name, group) in enumerate(spec.groups.items()):
    k_perm, k_sign, k_scale = jax.random.split(jax.random.fold_in(key, i), 3)
    ones = jnp.ones((group.size,), jnp.float32)
    sign, scale = ones, ones
    if flip and group.flip:
      sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (group.size,)), -1.0, 1.0)
    if rescale and group.rescale:
      scale = jnp.exp(jax.random.uniform(k_scale, (group.size,), minval=math.log(lo),
                                         maxval=math.log(hi)))
    perms[name] = GroupPerm(jax.random.permutation(k_perm, group.size), sign, scale)
  return perms


def _parts(t):
  """(perm, sign * scale or None) of a GroupPerm or a bare perm array."""
  if isinstance(t, GroupPerm):
    return t.perm, t.sign * t.scale
  return t, None


def _check(flat: dict, spec: PermutationSpec, perms: Mapping) -> None:
  problems = []
  for name in perms:
    if name not in spec.groups:
      close = difflib.get_close_matches(name, list(spec.groups), n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      problems.append(f"no group {name!r}{hint}")
      continue
    size = spec.groups[name].size
    parts = perms[name] if isinstance(perms[name], GroupPerm) else (perms[name],)
    bad = [tuple(np.shape(a)) for a in parts if np.shape(a) != (size,)]
    if bad:
      problems.append(f"group {name!r} has {size} units, its arrays have shapes {bad}")
    for ax in spec.groups[name].axes:
      if ax.tensor not in flat:
        problems.append(f"{ax.tensor} is missing")
      elif flat[ax.tensor].shape[ax.axis] != ax.blocks * size:
        problems.append(f"{ax.tensor} has shape {tuple(flat[ax.tensor].shape)}, axis "
                        f"{ax.axis} should have {ax.blocks * size} entries")
  if problems:
    raise ValueError(f"permute ({spec.net}): {'; '.join(problems)}; groups: "
                     f"{', '.join(spec.groups)}")


def _as_numpy(v):
  """`v` as a NumPy array, or None where it is traced (under jit or vmap)."""
  try:
    return None if v is None else np.asarray(v)
  except jax.errors.TracerArrayConversionError:
    return None


def _move(a, ax: Axis, size: int, perm, factor):
  """`a` with the units on `ax` relabelled by perm and multiplied by factor."""
  xp = jnp
  if isinstance(a, np.ndarray):  # NumPy in, NumPy out, unless perm or factor are traced
    np_perm, np_factor = _as_numpy(perm), _as_numpy(factor)
    if np_perm is not None and (factor is None or np_factor is not None):
      xp, perm, factor = np, np_perm, np_factor
  moved = xp.moveaxis(a, ax.axis, -1)
  lead = moved.shape[:-1]
  out = xp.take(moved.reshape(*lead, ax.blocks, size), perm, axis=-1)
  if factor is not None:
    out = out * factor.astype(out.dtype)
  return xp.moveaxis(out.reshape(*lead, ax.blocks * size), -1, ax.axis)


def permute(variables, spec: PermutationSpec, perms: Mapping[str, Any]):
  """New variables with every group in `perms` relabelled (pure; NumPy tensors stay
  NumPy unless the perms are traced, JAX ones stay JAX; works under jit and vmap)."""
  flat = flatten_variables(variables)
  _check(flat, spec, perms)
  for name, t in perms.items():
    group = spec.groups[name]
    perm, factor = _parts(t)
    for ax in group.axes:
      f = None if factor is None or ax.role == "perm" else (
          factor if ax.role == "out" else 1 / factor)
      flat[ax.tensor] = _move(flat[ax.tensor], ax, group.size, perm, f)
  out = unflatten_variables(flat)
  return freeze(out) if isinstance(variables, FrozenDict) else out
