"""ProbeX (Horwitz et al., CVPR 2025): learned probes through one layer of each model.

For a layer X [d_H, d_W] (jatlas.weights.inputs: units made x what each reads):
  Z = X U                   r_U learned probes U [d_W, r_U] -> responses [d_H, r_U]
  h_l = relu(V^T z_l)       one shared projection V [d_H, r_V] per probe response
  e = sum_l M_l h_l + b     per-probe encoders, summed (one Dense on the flat r_U x r_V)
  logits = T e              linear head, no activation between e and the head
Parameters: d_W r_U + d_H r_V + (r_U r_V r_T + r_T) + (r_T d_Y + d_Y); the paper's
768x768 layer, r_U = r_V = r_T = 128, 100 classes: 2,306,788. Init as PyTorch's Linear.
A LoRA layer is given as its factors {"B": [R, d_H, k], "A": [R, k, d_W]}: Z = B (A U),
never materialising B A.

Zero-shot head (`probex_zeroshot`): class embeddings E [K, d_E] (CLIP text or any
vectors) map through a Linear into the representation space; logits are cosine
similarities between e and the mapped classes (no temperature, as ProbeX), so
`predict(W, class_embeddings=E_new)` scores classes never seen in training.

Usage:
  enc = make_encoder("probex", layer="params/conv2/kernel", n_probes=32)
  enc.fit(tensors_R, task_R, val=(tensors_V, task_V))
  zs = make_encoder("probex_zeroshot", layer="lora").fit(W, y, class_embeddings=E_KD)
  zs.predict(W_new, class_embeddings=E_unseen)     # indices into E_unseen
  probex_param_count(768, 768, 128, 128, 128, 100) # 2306788
"""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jatlas.weights.encoder import Encoder, register
from jatlas.weights.heads import torch_dense, torch_uniform
from jatlas.weights.inputs import layer_matrix, pick_layer


def probex_param_count(d_H: int, d_W: int, r_U: int, r_V: int, r_T: int, d_Y: int) -> int:
  """Parameters of a ProbeX on a d_H x d_W layer (module docstring)."""
  return d_W * r_U + d_H * r_V + r_U * r_V * r_T + r_T + r_T * d_Y + d_Y


def probe_responses(x, u_WU):
  """Z = X U [B, d_H, r_U] for X [B, d_H, d_W], or for LoRA factors {"B", "A"}."""
  if isinstance(x, dict):
    return jnp.einsum("bhk,bku->bhu", x["B"], jnp.einsum("bkw,wu->bku", x["A"], u_WU))
  return jnp.einsum("bhw,wu->bhu", x, u_WU)


class ProbeXRepresentation(nn.Module):
  """Layers [B, d_H, d_W] (or LoRA factors) -> representations e [B, r_T]."""
  d_H: int
  d_W: int
  n_probes: int = 128
  proj_dim: int = 128
  rep_dim: int = 128

  @nn.compact
  def __call__(self, x):
    u_WU = self.param("U", torch_uniform(self.n_probes), (self.d_W, self.n_probes))
    v_HV = self.param("V", torch_uniform(self.d_H), (self.d_H, self.proj_dim))
    z_BHU = probe_responses(x, u_WU)
    h_BUV = nn.relu(jnp.einsum("bhu,hv->buv", z_BHU, v_HV))
    h_BF = h_BUV.reshape(h_BUV.shape[0], -1)
    return torch_dense(self.rep_dim, self.n_probes * self.proj_dim, name="M")(h_BF)


class ProbeX(nn.Module):
  d_H: int
  d_W: int
  n_out: int
  n_probes: int = 128
  proj_dim: int = 128
  rep_dim: int = 128

  @nn.compact
  def __call__(self, x):
    e_BT = ProbeXRepresentation(self.d_H, self.d_W, self.n_probes, self.proj_dim,
                                self.rep_dim, name="encoder")(x)
    return torch_dense(self.n_out, self.rep_dim, name="head")(e_BT)


class ProbeXZeroShot(nn.Module):
  """Cosine logits between representations and mapped class embeddings E [K, d_E]."""
  d_H: int
  d_W: int
  class_emb_KE: np.ndarray
  n_probes: int = 128
  proj_dim: int = 128
  rep_dim: int = 512

  @nn.compact
  def __call__(self, x):
    e_BT = ProbeXRepresentation(self.d_H, self.d_W, self.n_probes, self.proj_dim,
                                self.rep_dim, name="encoder")(x)
    emb = jnp.asarray(self.class_emb_KE, jnp.float32)
    t_KT = torch_dense(self.rep_dim, emb.shape[1], name="text_head")(emb)
    unit = lambda a: a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + 1e-8)
    return unit(e_BT) @ unit(t_KT).T


def layer_input(tensors, layer):
  """The encoder's input: X [R, d_H, d_W], or LoRA factors when `layer` names a
  pair "<name>.B" / "<name>.A" (up [R, d_H, k] and down [R, k, d_W])."""
  if layer is not None and f"{layer}.B" in tensors and f"{layer}.A" in tensors:
    return {"B": np.asarray(tensors[f"{layer}.B"], np.float32),
            "A": np.asarray(tensors[f"{layer}.A"], np.float32)}
  name, w = pick_layer(tensors, layer)
  return layer_matrix(w, name)


def _dims(x) -> tuple[int, int]:
  if isinstance(x, dict):
    return x["B"].shape[1], x["A"].shape[2]
  return x.shape[1], x.shape[2]


@register
class ProbeXEncoder(Encoder):
  name = "probex"
  defaults = {"layer": None, "n_probes": 128, "proj_dim": 128, "rep_dim": 128}
  fit_defaults = {"lr": 1e-3, "weight_decay": 1e-5}

  def features(self, tensors, fitting):
    x = layer_input(tensors, self.config["layer"])
    if fitting:
      self.dims_ = _dims(x)
    elif _dims(x) != self.dims_:
      raise ValueError(f"probex: layer {self.config['layer']!r} reads as {_dims(x)} "
                       f"(d_H, d_W), the encoder was fitted on {self.dims_}")
    return x

  def build(self, n_out):
    c = self.config
    return ProbeX(*self.dims_, n_out=n_out, n_probes=c["n_probes"], proj_dim=c["proj_dim"],
                  rep_dim=c["rep_dim"])

  def save(self, path):
    self.prep_["dims"] = np.asarray(self.dims_)
    super().save(path)

  def restore(self):
    self.dims_ = tuple(int(d) for d in self.prep_["dims"])


@register
class ProbeXZeroShotEncoder(ProbeXEncoder):
  """fit(W, y, class_embeddings=E_KD): y indexes the rows of E; predict/score take
  the candidate classes' embeddings (default: the training ones)."""
  name = "probex_zeroshot"
  defaults = {**ProbeXEncoder.defaults, "rep_dim": 512}
  fit_defaults = {"lr": 2e-3, "weight_decay": 0.0}

  def fit(self, W, y, *, class_embeddings, task="multiclass", val=None, **kw):
    if task != "multiclass":
      raise ValueError("probex_zeroshot scores one class per model: task='multiclass'")
    self.emb_KE = np.asarray(class_embeddings, np.float32)
    y = np.asarray(y)
    if y.min() < 0 or y.max() >= len(self.emb_KE):
      raise ValueError(f"y must index the {len(self.emb_KE)} rows of class_embeddings")
    super().fit(W, y, task=task, val=val, **kw)
    self.classes_ = np.arange(len(self.emb_KE))  # logits are over all rows of E
    return self

  def n_out(self, y):
    return len(self.emb_KE)

  def _targets(self, y, fitting):
    if fitting:
      self.classes_ = np.arange(len(self.emb_KE))
    return np.asarray(y, np.int32)

  def build(self, n_out):
    c = self.config
    return ProbeXZeroShot(*self.dims_, class_emb_KE=self.emb_KE, n_probes=c["n_probes"],
                          proj_dim=c["proj_dim"], rep_dim=c["rep_dim"])

  def _with(self, class_embeddings):
    if class_embeddings is not None:
      self.emb_KE = np.asarray(class_embeddings, np.float32)
      self.classes_ = np.arange(len(self.emb_KE))

  def decision_function(self, W, class_embeddings=None):
    self._with(class_embeddings)
    return super().decision_function(W)

  def predict(self, W, class_embeddings=None):
    self._with(class_embeddings)
    return super().predict(W)

  def evaluate(self, W, y, class_embeddings=None):
    self._with(class_embeddings)
    return super().evaluate(W, y)

  def score(self, W, y, class_embeddings=None):
    self._with(class_embeddings)
    return super().score(W, y)

  def save(self, path):
    self.prep_["class_emb_KE"] = self.emb_KE
    super().save(path)

  def restore(self):
    super().restore()
    self._with(self.prep_["class_emb_KE"])
