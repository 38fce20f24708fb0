"""Encoders built on the nets' permutation spec: canonicalised and equivariant.

canonical    every model's hidden units put in a canonical order (and sign, where
             the group's `flip` allows) by `jatlas.weights.canonical.canonicalise`,
             then any other encoder (`base`, default mlp_flat) on the result.
equivariant  `jatlas.weights.equivariant.EquivariantEncoder`: message passing over
             the spec's unit groups, pooled over units, invariant to every
             permutation of every group; per-tensor RMS scales fitted on the
             training models (prep_).
Both read the spec, so they work for every jatlas net; the spec is saved with a
fitted encoder (JSON) and rebuilt on load.

Usage:
  spec = nets.permutation_spec(zoo.model(), zoo.variables(0))
  enc = make_encoder("equivariant", spec=spec, hidden=64).fit(tensors_R, task_R)
  enc = make_encoder("canonical", spec=spec, base="dense",
                     base_kw={"layer": "params/conv1/kernel"}).fit(tensors_R, task_R)
"""
from jatlas.nets.symmetry import Axis, Group, PermutationSpec
from jatlas.weights.canonical import canonicalise
from jatlas.weights.encoder import FIT_KEYS, Encoder, make_encoder, register
from jatlas.weights.equivariant import EquivariantEncoder, prepare


def spec_to_json(spec: PermutationSpec) -> dict:
  return {"net": spec.net, "groups": [
      {"name": g.name, "size": g.size, "flip": g.flip, "rescale": g.rescale,
       "axes": [[a.tensor, a.axis, a.role, a.blocks] for a in g.axes]}
      for g in spec.groups.values()]}


def spec_from_json(d) -> PermutationSpec:
  if isinstance(d, PermutationSpec) or d is None:
    return d
  groups = {g["name"]: Group(g["name"], g["size"], tuple(Axis(*a) for a in g["axes"]),
                             g["flip"], g["rescale"]) for g in d["groups"]}
  return PermutationSpec(d["net"], groups)


class _SpecEncoder(Encoder):
  def __init__(self, **kw):
    super().__init__(**kw)
    self.config["spec"] = spec_from_json(self.config["spec"])
    if self.config["spec"] is None:
      raise ValueError(f"{self.name} encoder needs spec= (jatlas.nets.permutation_spec)")

  def save(self, path):
    spec, self.config["spec"] = self.config["spec"], spec_to_json(self.config["spec"])
    try:
      super().save(path)
    finally:
      self.config["spec"] = spec


@register
class Canonicalised(_SpecEncoder):
  name = "canonical"
  defaults = {"spec": None, "base": "mlp_flat", "base_kw": {}, "flip": True}

  def __init__(self, **kw):
    super().__init__(**kw)
    self.inner = make_encoder(self.config["base"], **dict(self.config["base_kw"]))
    for k in FIT_KEYS:  # the base encoder's own training defaults, unless given here
      if k not in self.given_:
        self.config[k] = self.inner.config[k]
    self.task_fit_defaults = self.inner.task_fit_defaults
    self.prep_ = self.inner.prep_

  def features(self, tensors, fitting):
    canon = canonicalise(tensors, self.config["spec"], flip=self.config["flip"])
    return self.inner.features(canon, fitting)

  def build(self, n_out):
    return self.inner.build(n_out)

  def apply_member(self, module, params, x_B, member):
    return self.inner.apply_member(module, params, x_B, member)

  def restore(self):
    self.inner.prep_.update(self.prep_)
    self.prep_ = self.inner.prep_
    self.inner.meta_ = getattr(self, "meta_", {})
    self.inner.restore()


@register
class Equivariant(_SpecEncoder):
  name = "equivariant"
  # the module's defaults (the best measured on the digits zoo), so both ways agree
  defaults = {"spec": None, "hidden": EquivariantEncoder.hidden,
              "edge_hidden": EquivariantEncoder.edge_hidden, "depth": EquivariantEncoder.depth,
              "head_hidden": EquivariantEncoder.head_hidden,
              "messages": EquivariantEncoder.messages, "sequential": EquivariantEncoder.sequential,
              "sign_symmetric": False, "canonical_sign": True}
  fit_defaults = {"batch_size": 32, "member_loop": None}

  def features(self, tensors, fitting):
    spec = self.config["spec"]
    named = {a.tensor for g in spec.groups.values() for a in g.axes}
    tensors = {k: v for k, v in tensors.items() if k in named or k.startswith("params/")}
    scales = None if fitting else {k[len("scale:"):]: float(v) for k, v in self.prep_.items()
                                   if k.startswith("scale:")}
    x, scales = prepare(tensors, spec, scales=scales,
                        canonical_sign=self.config["canonical_sign"])
    if fitting:
      self.prep_.update({f"scale:{k}": float(v) for k, v in scales.items()})
    return x

  def build(self, n_out):
    c = self.config
    return EquivariantEncoder(c["spec"], out_dim=n_out, hidden=c["hidden"],
                              edge_hidden=c["edge_hidden"], depth=c["depth"],
                              head_hidden=tuple(c["head_hidden"]), messages=c["messages"],
                              sequential=c["sequential"], sign_symmetric=c["sign_symmetric"])
