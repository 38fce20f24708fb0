"""Nets as sequences of named stages, run whole or cut at any tap.

A net subclasses `StagedNet` and declares `stages()`: a tuple of `Stage(name, ops)`.
The output of a stage is the tap `name`; the last stage is "logits". The ops are
frozen dataclasses that build their flax modules when run, under the names they
declare, so parameters are named as the ops say (`conv1/kernel`, `block2/bn1/scale`).
`jatlas.nets.symmetry` reads the same declarations to find the hidden-unit symmetries.

Ops:
  Linear(name, make)   a layer whose params are `kernel` (..., in, out) and optionally
                       `bias` (out,); `make(name=...)` builds it (Conv2D, nn.Dense)
  Norm(name)           BatchNorm with torch's defaults; statistics in `batch_stats`
  Act(activation)      an activation by name (jatlas.nets.activations)
  AvgPool(window), MaxPool(window)   non-overlapping pooling, floor on odd sizes
  Mean()               global average pool (N, H, W, C) -> (N, C)
  Flatten()            (N, ...) -> (N, D) in NHWC order: feature s*C + c
  Residual(name, branch, shortcut, post)   post(branch(h) + shortcut(h)), with the
                       layers of branch and shortcut under `name`; shortcut () = identity

Usage:
  class Net(StagedNet):
    width: int = 8
    def stages(self):
      return (Stage("fc1", (Flatten(), Linear("fc1", partial(nn.Dense, self.width)),
                            Act("relu"))),
              Stage("logits", (Linear("head", partial(nn.Dense, 2)),)))
  logits = net.apply(variables, x)
  h, taps = net.apply(variables, x, stop="fc1", return_taps=True)  # taps up to fc1
  logits = net.apply(variables, h, start="fc1")                    # the rest
  net.tap_names()  # ("fc1", "logits")
"""
import collections
import dataclasses
import difflib
from typing import Any, Callable, ClassVar

import flax.linen as nn

from jatlas.nets import activations
from jatlas.nets.conv import avg_pool


def run_ops(ops, h, train: bool):
  """Runs `ops` in order inside the calling module's compact scope."""
  for op in ops:
    h = op(h, train)
  return h


@dataclasses.dataclass(frozen=True)
class Linear:
  """A layer linear in its input: params `kernel` (..., in, out), `bias` (out,)."""
  name: str
  make: Callable[..., nn.Module]

  def __call__(self, h, train):
    return self.make(name=self.name)(h)


@dataclasses.dataclass(frozen=True)
class Norm:
  """BatchNorm over the last axis, torch's defaults (momentum 0.1 = flax 0.9)."""
  name: str

  def __call__(self, h, train):
    # Exact two-pass variance: E[x^2]-E[x]^2 loses digits on large activations.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_fast_variance=False, name=self.name)(h)


@dataclasses.dataclass(frozen=True)
class Act:
  """Elementwise activation; `odd`: f(-x) = -f(x), `homogeneous`: f(ax) = af(x), a > 0."""
  activation: str
  flattens: ClassVar[bool] = False

  def __post_init__(self):
    activations.get_activation(self.activation)  # unknown names fail at declaration

  @property
  def odd(self) -> bool:
    return self.activation in activations.ODD

  @property
  def homogeneous(self) -> bool:
    return self.activation in activations.POSITIVELY_HOMOGENEOUS

  def __call__(self, h, train):
    return activations.get_activation(self.activation)(h)


@dataclasses.dataclass(frozen=True)
class AvgPool:
  """Linear per channel: keeps sign flips and rescaling of the channels."""
  window: int = 2
  odd: ClassVar[bool] = True
  homogeneous: ClassVar[bool] = True
  flattens: ClassVar[bool] = False

  def __call__(self, h, train):
    return avg_pool(h, self.window)


@dataclasses.dataclass(frozen=True)
class MaxPool:
  """Keeps positive rescaling of a channel, not its sign: max(-x) = -min(x)."""
  window: int = 2
  odd: ClassVar[bool] = False
  homogeneous: ClassVar[bool] = True
  flattens: ClassVar[bool] = False

  def __call__(self, h, train):
    w = (self.window, self.window)
    return nn.max_pool(h, w, strides=w, padding="VALID")


@dataclasses.dataclass(frozen=True)
class Mean:
  """Global average pool over H and W."""
  odd: ClassVar[bool] = True
  homogeneous: ClassVar[bool] = True
  flattens: ClassVar[bool] = False

  def __call__(self, h, train):
    return h.mean(axis=(1, 2))


@dataclasses.dataclass(frozen=True)
class Flatten:
  """(N, ...) -> (N, D); NHWC order, so feature s*C + c is channel c at position s."""
  odd: ClassVar[bool] = True
  homogeneous: ClassVar[bool] = True
  flattens: ClassVar[bool] = True

  def __call__(self, h, train):
    return h.reshape(h.shape[0], -1)


class _Scope(nn.Module):
  """Runs a Residual's ops as children of one module named like the Residual."""
  residual: Any

  @nn.compact
  def __call__(self, h, train: bool):
    return self.residual.body(h, train)


@dataclasses.dataclass(frozen=True)
class Residual:
  """post(branch(h) + shortcut(h)); its layers live under `name` (`block1/conv1`)."""
  name: str
  branch: tuple
  shortcut: tuple = ()
  post: tuple = ()

  def body(self, h, train):
    """The block's computation in the current scope (used by modules that are blocks)."""
    y = run_ops(self.branch, h, train)
    return run_ops(self.post, y + run_ops(self.shortcut, h, train), train)

  def __call__(self, h, train):
    return _Scope(self, name=self.name)(h, train)


@dataclasses.dataclass(frozen=True)
class Stage:
  """`ops` run in order; their output is the tap `name`."""
  name: str
  ops: tuple


def _tap_index(net_name: str, taps: tuple[str, ...], **cuts) -> dict[str, int | None]:
  """{"start": i, "stop": j} positions of the named taps; every bad name in one error."""
  index, problems = {}, []
  for arg, tap in cuts.items():
    if tap is None:
      index[arg] = None
    elif tap in taps:
      index[arg] = taps.index(tap)
    else:
      close = difflib.get_close_matches(str(tap), taps, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      problems.append(f"{arg}={tap!r} is not a tap{hint}")
  if problems:
    raise ValueError(f"{net_name}: {'; '.join(problems)}; its taps are {', '.join(taps)}")
  return index


class StagedNet(nn.Module):
  """Base of the nets: runs the slice of `stages()` after tap `start` up to tap `stop`.

  `x` is the net's input when `start` is None, else the output of tap `start`;
  `stop` None runs to the logits. With `return_taps`, also returns an OrderedDict
  of the outputs of the stages that ran, in forward order.
  """

  def stages(self) -> tuple[Stage, ...]:
    raise NotImplementedError(f"{type(self).__name__} declares no stages")

  def check_input(self, x) -> None:
    """Raises on an input the net cannot take; only called when starting at the input."""

  def tap_names(self) -> tuple[str, ...]:
    """The taps in forward order (needs no input and no variables)."""
    return tuple(stage.name for stage in self.stages())

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_taps: bool = False,
               start: str | None = None, stop: str | None = None):
    stages = self.stages()
    taps = tuple(stage.name for stage in stages)
    at = _tap_index(type(self).__name__, taps, start=start, stop=stop)
    first = 0 if start is None else at["start"] + 1
    last = len(stages) - 1 if stop is None else at["stop"]
    if first > last:
      raise ValueError(f"{type(self).__name__}: nothing to run from start={start!r} to "
                       f"stop={stop!r}: stop must come after start in {', '.join(taps)}")
    if start is None:
      self.check_input(x)
    # OrderedDict: jit/vmap would return a plain dict with its keys re-sorted.
    outputs = collections.OrderedDict()
    h = x
    for stage in stages[first:last + 1]:
      outputs[stage.name] = h = run_ops(stage.ops, h, train)
    return (h, outputs) if return_taps else h
