"""A permutation-invariant weight-space encoder built on a net's permutation spec.

Every tensor a model's weights hold is read through the spec
(`jatlas.nets.permutation_spec`) by the number of hidden-unit axes it has:
  0 unit axes  invariant: flattened per model (the head's bias, or any tensor the
               spec does not name)                                  -> [B, C]
  1 unit axis  per-unit features of that group: a bias, a BatchNorm vector, the
               first layer's kernel (its input axes are fixed), the head's
               kernel (its logits axis is fixed)                    -> [B, U, C]
  2 unit axes  edges between two groups: a kernel that reads group a and makes
               group b                                              -> [B, U_a, U_b, C]
C flattens every other axis: kernel taps, fixed input channels or logits, and the
`blocks` of an axis (the spatial positions where a Dense reads a flattened map:
entry b * U + u is channel b of unit u).

The network (NFN-NP / DeepSets on the net's graph, in the spirit of Neural Graphs):
  h_g   = Dense(per-unit features of g)                       node states [B, U_g, H]
  depth rounds; in each, every group g in forward order (sequential=True: it hears
  the groups before it already updated this round, so one round carries the input
  layer's information to the last hidden layer) or all at once (False):
    for every edge tensor e between g and a group s, a message from s's units:
      bilinear:  z_su = Dense(e_su) * Dense(h_s)        [B, U_s, U_g, E]  (products
                 of weights along paths, as a forward pass multiplies them)
      mlp:       z_su = relu(Dense(e_su) + Dense(h_s) + Dense(h_g))
      m_g += Dense(mean_s z_su)
    h_g = h_g + MLP(LayerNorm([h_g, mean_u h_g, m_g ...]))   per unit, shared in g
  out   = MLP([mean_u h_g, max_u h_g for every g, invariant tensors])  [B, out_dim]
Means and maxes over units make the output exactly invariant to every permutation
of every group (up to float rounding); nothing is hard-coded to one net.

Signs: a tanh net's units can also be flipped (`Group.flip`). Two ways to be
invariant to that too:
  - `prepare(..., canonical_sign=True)` (the default) canonicalises signs with
    `jatlas.weights.canonical.canonicalise`: prepare + module are invariant. The
    better one on the LeNet-5 digits zoo.
  - `sign_symmetric=True`: the module alone is invariant: on flip groups states
    are odd in the unit's sign (no biases, tanh, bias-free LayerNorm, bilinear
    messages, an even gate for the group context), read out through even
    products; messages are always bilinear. Needs no canonicalisation; learns
    less well there.

Inputs should be of unit scale: `prepare` divides every tensor by one scalar per
tensor (its RMS over the models it is fitted on; invariant to every symmetry).

Usage:
  spec = nets.permutation_spec(net, variables)
  x_R, scales = prepare(tensors_R, spec)                 # fit the scales on train
  x_T, _ = prepare(tensors_T, spec, scales=scales)       # reuse them on test
  enc = EquivariantEncoder(spec, out_dim=10)             # defaults: see the class
  params = enc.init(jax.random.key(0), {k: v[:2] for k, v in x_R.items()})["params"]
  logits_BK = enc.apply({"params": params}, x_batch)     # {name: [B, *shape]}
"""
from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jatlas.nets.symmetry import PermutationSpec
from jatlas.weights.canonical import split_unit_shape, canonicalise, unit_axes


def prepare(tensors_R: Mapping[str, np.ndarray], spec: PermutationSpec, *,
            scales: Mapping[str, float] | None = None, canonical_sign: bool = True):
  """NumPy preprocessing: signs canonicalised (flip groups), every tensor divided
  by its RMS over these models (or by the given `scales`) -> (tensors, scales)."""
  tensors = {k: np.asarray(v, np.float32) for k, v in tensors_R.items()}
  if canonical_sign:
    tensors = canonicalise(tensors, spec, flip=True)
  if scales is None:
    scales = {k: float(np.sqrt(np.mean(np.square(v, dtype=np.float64))) or 1.0)
              for k, v in tensors.items()}
  missing = sorted(set(tensors) - set(scales))
  if missing:
    raise ValueError(f"prepare: no scale for tensors {missing}; scales has "
                     f"{sorted(scales)}")
  return {k: v / np.float32(scales[k]) for k, v in tensors.items()}, dict(scales)


def split_by_units(tensors: Mapping, spec: PermutationSpec):
  """{name: [B, *shape]} -> (nodes {group: [(name, [B, U, C])]},
  edges [(name, group_a, group_b, [B, U_a, U_b, C])], invariant [(name, [B, C])])."""
  layout = unit_axes(spec)
  nodes = {g: [] for g in spec.groups}
  edges, invariant = [], []
  for name in sorted(tensors):
    x = tensors[name]
    entries = layout.get(name, ())
    if len(entries) > 2:
      raise ValueError(f"{name}: {len(entries)} unit axes ({[g for g, _ in entries]}); "
                       f"the encoder reads tensors with at most 2")
    for g, ax in entries:
      want = ax.blocks * spec.groups[g].size
      if x.ndim <= ax.axis + 1 or x.shape[ax.axis + 1] != want:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected [B, ...] with "
                         f"{want} entries on axis {ax.axis + 1} (group {g!r})")
    if not entries:
      invariant.append((name, x.reshape(x.shape[0], -1)))
    elif len(entries) == 1:
      nodes[entries[0][0]].append((name, _by_units(x, entries, spec)))
    else:
      edges.append((name, entries[0][0], entries[1][0], _by_units(x, entries, spec)))
  return nodes, edges, invariant


def _by_units(x, entries, spec):
  """[B, *shape] -> [B, U_1, (U_2,) C]: unit axes first, all the rest flattened."""
  shape, unit_dims = split_unit_shape(x, entries, spec)
  rest = [d for d in range(1, len(shape)) if d not in unit_dims]
  moved = jnp.transpose(x.reshape(shape), [0, *unit_dims, *rest])
  return moved.reshape(*moved.shape[:1 + len(unit_dims)], -1)


def _bilinear_mean(x_BabC, h_BsE, kernel_CE, to_dst: bool):
  """mean_s (x_su @ kernel) * h_s over the sender units s (axis a if to_dst, else b)
  -> [B, U, E], as one matmul per model over (s, c): the [B, U_a, U_b, E] product
  the formula names is never formed (it is the encoder's whole memory traffic)."""
  hk_BsCE = h_BsE[:, :, None, :] * kernel_CE
  spec = "bsuc,bsce->bue" if to_dst else "busc,bsce->bue"
  return jnp.einsum(spec, x_BabC, hk_BsCE) / h_BsE.shape[1]


class _Kernel(nn.Module):
  """A bias-free Dense's kernel alone (the same parameter a Dense would hold)."""
  shape: tuple

  @nn.compact
  def __call__(self):
    return self.param("kernel", nn.initializers.lecun_normal(), self.shape)


def _safe(name: str) -> str:
  return name.replace("/", "_")


class EquivariantEncoder(nn.Module):
  """{name: [B, *shape]} -> [B, out_dim], invariant to the spec's permutations
  (module docstring). Deterministic: no dropout, no batch statistics.

  hidden: node state width H; edge_hidden: message width E (the cost: every edge
  tensor makes [B, U_a, U_b, E] per round); depth: rounds; head_hidden: the MLP
  after pooling; messages: "bilinear" or "mlp"; sequential: forward-order rounds;
  sign_symmetric: exactly flip-invariant without canonicalisation. The defaults
  are the best measured on the LeNet-5 digits zoo (task ID, 20 models per task)."""
  spec: PermutationSpec
  out_dim: int
  hidden: int = 128
  edge_hidden: int = 64
  depth: int = 1
  head_hidden: Sequence[int] = (64,)
  messages: str = "bilinear"
  sequential: bool = True
  sign_symmetric: bool = False

  @nn.compact
  def __call__(self, tensors: Mapping):
    if self.messages not in ("mlp", "bilinear"):
      raise ValueError(f"messages={self.messages!r}: expected 'mlp' or 'bilinear'")
    nodes, edges, invariant = split_by_units(tensors, self.spec)
    self._check_parity()
    batch = next(iter(tensors.values())).shape[0]
    h = {g: self._embed(g, parts, batch) for g, parts in nodes.items()}
    for layer in range(self.depth):
      h = self._message_pass(layer, h, edges)
    pooled = [self._read_out(g, h_BUH) for g, h_BUH in h.items()]
    pooled += [x_BC for _, x_BC in invariant]
    y = jnp.concatenate(pooled, -1)
    for i, width in enumerate(self.head_hidden):
      y = nn.relu(nn.Dense(width, name=f"head_{i}")(y))
    return nn.Dense(self.out_dim, name="out")(y)

  def _odd(self, g: str) -> bool:
    """States of g flip with its units (sign_symmetric and the group flips)."""
    return self.sign_symmetric and self.spec.groups[g].flip

  def _check_parity(self) -> None:
    for g, group in self.spec.groups.items():
      if self._odd(g) and any(ax.role == "perm" for ax in group.axes):
        raise ValueError(f"sign_symmetric: group {g!r} flips but has 'perm' axes "
                         f"({[ax.tensor for ax in group.axes if ax.role == 'perm']}), "
                         f"which do not flip with its units")

  def _embed(self, g: str, parts, batch: int):
    """Node states [B, U, H] from the group's per-unit tensors."""
    size = self.spec.groups[g].size
    if not parts:
      if self._odd(g):  # nothing odd to start from: states arrive by messages
        return jnp.zeros((batch, size, self.hidden), jnp.float32)
      parts = [("ones", jnp.ones((batch, size, 1), jnp.float32))]
    x_BUC = jnp.concatenate([x for _, x in parts], -1)
    return nn.Dense(self.hidden, use_bias=not self._odd(g), name=f"embed_{_safe(g)}")(x_BUC)

  def _message_pass(self, layer: int, h, edges):
    """One round: every group's states updated from messages along its edges."""
    if not self.sequential:
      messages = {g: [] for g in h}
      for name, a, b, x_BabC in edges:
        messages[b].append(self._message(layer, name, x_BabC, h, a, b, to_dst=True))
        messages[a].append(self._message(layer, name, x_BabC, h, a, b, to_dst=False))
      return {g: self._update(f"{layer}_{_safe(g)}", g, h_BUH, messages[g])
              for g, h_BUH in h.items()}
    h = dict(h)
    for g in h:  # forward order: each group hears the groups before it already updated
      messages = [self._message(layer, name, x_BabC, h, a, b, to_dst=to_dst)
                  for name, a, b, x_BabC in edges
                  for to_dst in (True, False) if g == (b if to_dst else a)]
      h[g] = self._update(f"{layer}_{_safe(g)}", g, h[g], messages)
    return h

  def _message(self, layer: int, name: str, x_BabC, h, a: str, b: str, to_dst: bool):
    """[B, U, H] into b (to_dst) or into a: a mean over the edge's other end."""
    tag = f"{layer}_{_safe(name)}_{'dst' if to_dst else 'src'}"
    receiver, sender = (b, a) if to_dst else (a, b)
    dense = lambda n, x, odd: nn.Dense(self.edge_hidden, use_bias=not odd,
                                       name=f"{n}_{tag}")(x)
    from_sender = dense("sender", h[sender], True)
    if self.messages == "bilinear" or self.sign_symmetric:
      # products keep each end's sign: e_ab h_a flips with b only
      kernel_CE = _Kernel((x_BabC.shape[-1], self.edge_hidden), name=f"edge_{tag}")()
      z_BuE = _bilinear_mean(x_BabC, from_sender, kernel_CE, to_dst)
    else:
      from_sender = from_sender[:, :, None] if to_dst else from_sender[:, None, :]
      from_receiver = dense("receiver", h[receiver], True)
      from_receiver = from_receiver[:, None, :] if to_dst else from_receiver[:, :, None]
      z_BabE = nn.relu(dense("edge", x_BabC, False) + from_sender + from_receiver)
      z_BuE = z_BabE.mean(1 if to_dst else 2)
    return nn.Dense(self.hidden, use_bias=not self._odd(receiver), name=f"message_{tag}")(z_BuE)

  def _update(self, tag: str, g: str, h_BUH, messages):
    """Residual per-unit MLP over [state, group context, messages]."""
    odd = self._odd(g)
    if odd:  # an even summary of the group gates each (odd) state
      gate = nn.Dense(self.hidden, name=f"gate_{tag}")(jnp.mean(h_BUH ** 2, 1, keepdims=True))
      context = h_BUH * gate
    else:
      context = jnp.broadcast_to(h_BUH.mean(1, keepdims=True), h_BUH.shape)
    inputs = jnp.concatenate([h_BUH, context, *messages], -1)
    inputs = nn.LayerNorm(use_bias=not odd, name=f"norm_{tag}")(inputs)
    act = jnp.tanh if odd else nn.relu
    z = act(nn.Dense(self.hidden, use_bias=not odd, name=f"update_{tag}")(inputs))
    return h_BUH + nn.Dense(self.hidden, use_bias=not odd, name=f"mix_{tag}")(z)

  def _read_out(self, g: str, h_BUH):
    """[B, 2H]: mean and max over the units (of an even product where states flip)."""
    if self._odd(g):
      p = nn.Dense(self.hidden, use_bias=False, name=f"read_a_{_safe(g)}")(h_BUH)
      q = nn.Dense(self.hidden, use_bias=False, name=f"read_b_{_safe(g)}")(h_BUH)
      h_BUH = p * q
    return jnp.concatenate([h_BUH.mean(1), h_BUH.max(1)], -1)
