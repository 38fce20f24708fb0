"""The rule table between PyTorch state-dict names/layouts and Flax variables.

A rule matches a source name (`re.fullmatch`) and tensor rank, and returns the
converted tensors under their new names; the first matching rule wins. Flax
names are "/"-joined and start with the collection: `layer1.0.conv1.weight`
(OIHW) <-> `params/layer1/0/conv1/kernel` (HWIO). Extend a table by putting
your rules first:

  rules = (*mha_rules(num_heads=4), *TORCH_TO_FLAX)
  converted = apply_rules(state_dict, rules)
  converted.tensors["params/encoder/self_attn/query/kernel"]  # (E, H, D)
"""
import dataclasses
import re
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

Convert = Callable[[re.Match, np.ndarray], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Rule:
  """`pattern` is matched against the whole name; `ndim` limits the rank."""
  pattern: str
  convert: Convert
  ndim: int | tuple[int, ...] | None = None

  def match(self, name: str, ndim: int) -> re.Match | None:
    ranks = (self.ndim,) if isinstance(self.ndim, int) else self.ndim
    if ranks is not None and ndim not in ranks:
      return None
    return re.fullmatch(self.pattern, name)


class Converted(NamedTuple):
  tensors: dict[str, np.ndarray]  # new name -> tensor
  sources: dict[str, str]  # new name -> the source name it came from
  unmatched: list[str]  # source names no rule matched


def apply_rules(tensors: Mapping[str, np.ndarray],
                rules: Sequence[Rule]) -> Converted:
  """Converts every tensor by the first rule matching its name and rank."""
  out, sources, unmatched = {}, {}, []
  for name in sorted(tensors):
    a = tensors[name]
    found = next(((r, m) for r in rules if (m := r.match(name, np.ndim(a)))),
                 None)
    if found is None:
      unmatched.append(name)
      continue
    rule, match = found
    for new, b in rule.convert(match, a).items():
      if new in out:
        raise ValueError(f"{name!r} and {sources[new]!r} both convert to "
                         f"{new!r}; add a rule that tells them apart")
      out[new], sources[new] = b, name
  return Converted(out, sources, unmatched)


# --- layouts -----------------------------------------------------------------


def linear_layout(w: np.ndarray) -> np.ndarray:
  """Linear (out, in) <-> Dense (in, out); its own inverse."""
  return w.T


def conv_to_flax(w_OIS: np.ndarray) -> np.ndarray:
  """Conv1d/2d/3d O,I,*spatial -> *spatial,I,O (e.g. OIHW -> HWIO)."""
  return w_OIS.transpose(*range(2, w_OIS.ndim), 1, 0)


def conv_to_torch(w_SIO: np.ndarray) -> np.ndarray:
  """*spatial,I,O -> O,I,*spatial (e.g. HWIO -> OIHW)."""
  k = w_SIO.ndim
  return w_SIO.transpose(k - 1, k - 2, *range(k - 2))


# --- torch -> flax -----------------------------------------------------------


def _module_path(match: re.Match) -> str:
  return match["m"].replace(".", "/")


def flax_name(collection: str, leaf: str, layout=None) -> Convert:
  """Rule action: torch module `m` -> `collection/m/leaf` (dots -> slashes)."""
  def convert(match, a):
    return {f"{collection}/{_module_path(match)}/{leaf}":
            a if layout is None else layout(a)}
  return convert


def drop(match, a):
  del match, a
  return {}


# A 2-D `weight` is an Embedding when its module's last name part starts
# with "emb" or has "_emb" (embed_tokens, word_embeddings), or is GPT-2's
# wte/wpe; anything else 2-D is a Linear. Prepend a rule for other names.
EMBEDDING = r"(?P<m>(?:.+\.)?(?:(?:[^.]*_)?[Ee]mb[^.]*|wte|wpe))"

TORCH_TO_FLAX: tuple[Rule, ...] = (
    Rule(r"(?P<m>.+)\.num_batches_tracked", drop),  # flax keeps no counter
    Rule(r"(?P<m>.+)\.running_mean", flax_name("batch_stats", "mean")),
    Rule(r"(?P<m>.+)\.running_var", flax_name("batch_stats", "var")),
    Rule(EMBEDDING + r"\.weight", flax_name("params", "embedding"), ndim=2),
    # Norms (BatchNorm, LayerNorm, GroupNorm): 1-D weight; gamma/beta are
    # the legacy LayerNorm names.
    Rule(r"(?P<m>.+)\.(?:weight|gamma)", flax_name("params", "scale"), ndim=1),
    Rule(r"(?P<m>.+)\.beta", flax_name("params", "bias"), ndim=1),
    Rule(r"(?P<m>.+)\.weight", flax_name("params", "kernel", linear_layout),
         ndim=2),
    Rule(r"(?P<m>.+)\.weight", flax_name("params", "kernel", conv_to_flax),
         ndim=(3, 4, 5)),
    Rule(r"(?P<m>.+)\.bias", flax_name("params", "bias")),
)


# --- flax -> torch -----------------------------------------------------------


def torch_name(leaf: str, layout=None) -> Convert:
  """Rule action: flax `collection/m/...` -> torch `m.leaf` (slashes -> dots)."""
  def convert(match, a):
    name = f"{match['m'].replace('/', '.')}.{leaf}"
    return {name: a if layout is None else layout(a)}
  return convert


def _running_mean(match, a):
  # torch's BatchNorm state dict also holds a step counter; flax has none, so
  # write 0 (it only matters for momentum=None, the cumulative average).
  m = match["m"].replace("/", ".")
  return {f"{m}.running_mean": a,
          f"{m}.num_batches_tracked": np.zeros((), np.int64)}


FLAX_TO_TORCH: tuple[Rule, ...] = (
    Rule(r"batch_stats/(?P<m>.+)/mean", _running_mean),
    Rule(r"batch_stats/(?P<m>.+)/var", torch_name("running_var")),
    Rule(r"params/(?P<m>.+)/(?:scale|embedding)", torch_name("weight")),
    Rule(r"params/(?P<m>.+)/kernel", torch_name("weight", linear_layout),
         ndim=2),
    # 3-D kernels are read as Conv1d; DenseGeneral kernels (attention) need
    # their own rules.
    Rule(r"params/(?P<m>.+)/kernel", torch_name("weight", conv_to_torch),
         ndim=(3, 4, 5)),
    Rule(r"params/(?P<m>.+)/bias", torch_name("bias")),
)


# --- attention extensions ----------------------------------------------------


def mha_rules(num_heads: int) -> tuple[Rule, ...]:
  """`torch.nn.MultiheadAttention` -> `flax.linen.MultiHeadDotProductAttention`.

  in_proj_weight (3E, E) -> query/key/value kernels (E, H, D); in_proj_bias
  (3E,) -> biases (H, D); out_proj.weight (E, E) -> out/kernel (H, D, E).
  Forward only: the reverse would have to merge three tensors into one.
  """
  def in_proj(match, w):
    m = _module_path(match)
    parts = np.split(w, 3, axis=0)
    if w.ndim == 2:  # (E_out, E_in) -> (E_in, H, D); torch splits E_out head-major
      parts = [p.T.reshape(p.shape[1], num_heads, -1) for p in parts]
    else:
      parts = [p.reshape(num_heads, -1) for p in parts]
    leaf = "kernel" if w.ndim == 2 else "bias"
    return {f"params/{m}/{qkv}/{leaf}": p
            for qkv, p in zip(("query", "key", "value"), parts)}

  def out_proj(match, w_OI):
    return {f"params/{_module_path(match)}/out/kernel":
            w_OI.T.reshape(num_heads, -1, w_OI.shape[0])}

  return (
      Rule(r"(?P<m>.+)\.in_proj_(?:weight|bias)", in_proj),
      Rule(r"(?P<m>.+)\.out_proj\.weight", out_proj, ndim=2),
      Rule(r"(?P<m>.+)\.out_proj\.bias",
           lambda match, b: {f"params/{_module_path(match)}/out/bias": b}),
  )


def hf_attention_rules(head_dim: int, q: str = "q_proj", k: str = "k_proj",
                       v: str = "v_proj", o: str = "o_proj") -> tuple[Rule, ...]:
  """Separate q/k/v/o Linears (Hugging Face naming) -> flax attention params.

  `<m>.q_proj.weight` (H*D, E) -> `params/<m>/query/kernel` (E, H, D), bias
  (H*D,) -> (H, D); likewise k/v (fewer heads for grouped-query attention);
  `<m>.o_proj.weight` (E, H*D) -> `params/<m>/out/kernel` (H, D, E). The
  defaults are Llama-style names; pass your model's. Forward only.
  """
  def qkv(target):
    def convert(match, a):
      path = f"params/{_module_path(match)}/{target}"
      if a.ndim == 2:
        return {f"{path}/kernel": a.T.reshape(a.shape[1], -1, head_dim)}
      return {f"{path}/bias": a.reshape(-1, head_dim)}
    return convert

  def out(match, a):
    path = f"params/{_module_path(match)}/out"
    if a.ndim == 2:
      return {f"{path}/kernel": a.T.reshape(-1, head_dim, a.shape[0])}
    return {f"{path}/bias": a}

  rules = [Rule(rf"(?P<m>.+)\.{re.escape(name)}\.(?:weight|bias)", qkv(target))
           for name, target in ((q, "query"), (k, "key"), (v, "value"))]
  rules.append(Rule(rf"(?P<m>.+)\.{re.escape(o)}\.(?:weight|bias)", out))
  return tuple(rules)
