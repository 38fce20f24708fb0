"""PyTorch checkpoints run in jatlas, and jatlas variables run in PyTorch.

Twins get random weights (BatchNorm: random running stats, eval mode), are
saved with safetensors.torch.save_file, loaded by jatlas and run: logits
within 1e-5 of torch's. The reverse converts random jatlas variables with
`to_torch` and loads them with torch's strict `load_state_dict`.
"""
import flax.linen as nn
import jax
import numpy as np
import pytest
import safetensors.torch
import torch

import torch_twins
from jatlas import io

ATOL = 1e-5


@pytest.mark.parametrize("name", torch_twins.NAMES)
def test_torch_checkpoint_runs_in_jatlas(name, tmp_path):
  twin, net, x, x_torch = torch_twins.make(name)
  path = str(tmp_path / f"{name}.safetensors")
  safetensors.torch.save_file(twin.state_dict(), path)
  variables = io.from_torch(net, path, input_shape=x.shape[1:])
  np.testing.assert_allclose(net.apply(variables, x), torch_twins.forward(twin, x_torch),
                             atol=ATOL, rtol=0)


def test_resnet_batch_stats_are_the_running_stats():
  twin, net, x, _ = torch_twins.make("resnet")
  variables = io.from_torch(net, twin.state_dict(), input_shape=x.shape[1:])
  bn = twin.block2.bn1
  np.testing.assert_array_equal(variables["batch_stats"]["block2"]["bn1"]["var"],
                                bn.running_var.numpy())
  np.testing.assert_array_equal(variables["params"]["block2"]["bn1"]["scale"],
                                bn.weight.detach().numpy())


@pytest.mark.parametrize("name", torch_twins.NAMES)
def test_jatlas_variables_run_in_torch(name):
  twin, net, x, x_torch = torch_twins.make(name)
  variables = torch_twins.random_variables(net, x)
  state_dict = io.to_torch(net, variables, input_shape=x.shape[1:])
  torch_twins.load_numpy(twin, state_dict)
  np.testing.assert_allclose(torch_twins.forward(twin, x_torch), net.apply(variables, x),
                             atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["lenet5", "cnn1d", "resnet"])
def test_round_trip_keeps_torch_names_and_values(name):
  twin, net, x, _ = torch_twins.make(name)
  state_dict = {k: v.numpy() for k, v in twin.state_dict().items()}
  back = io.to_torch(net, io.from_torch(net, state_dict, input_shape=x.shape[1:]),
                     input_shape=x.shape[1:])
  assert sorted(back) == sorted(state_dict)
  for k, v in state_dict.items():
    if k.endswith("num_batches_tracked"):  # flax keeps no counter: written as 0
      assert back[k].dtype == np.int64 and back[k] == 0
    else:
      np.testing.assert_array_equal(back[k], v, err_msg=k)


# --- a transformer encoder block: the generic loader plus attention rules ---

D, HEADS, FF = 16, 4, 32


class EncoderLayer(nn.Module):
  """Flax twin of torch.nn.TransformerEncoderLayer (post-norm, ReLU, eval)."""

  @nn.compact
  def __call__(self, x_NLD):
    attn = nn.MultiHeadDotProductAttention(num_heads=HEADS, name="self_attn")(x_NLD, x_NLD)
    x_NLD = nn.LayerNorm(epsilon=1e-5, name="norm1")(x_NLD + attn)  # torch's eps
    h = nn.Dense(D, name="linear2")(nn.relu(nn.Dense(FF, name="linear1")(x_NLD)))
    return nn.LayerNorm(epsilon=1e-5, name="norm2")(x_NLD + h)


@pytest.fixture(scope="module")
def encoder():
  torch.manual_seed(0)
  layer = torch.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
  with torch.no_grad():  # LayerNorm affine params away from their 1/0 init
    for norm in (layer.norm1, layer.norm2):
      norm.weight.uniform_(0.5, 1.5)
      norm.bias.normal_(0.0, 0.2)
  x_NLD = np.random.default_rng(0).normal(size=(2, 5, D)).astype(np.float32)
  return layer.eval(), x_NLD, torch_twins.forward(layer, torch.from_numpy(x_NLD))


def test_transformer_encoder_layer(encoder, tmp_path):
  layer, x_NLD, expected = encoder
  path = str(tmp_path / "encoder.safetensors")
  safetensors.torch.save_file(layer.state_dict(), path)
  like = jax.eval_shape(EncoderLayer().init, jax.random.key(0), x_NLD)
  variables = io.load_torch(path, like=like, rules=(*io.mha_rules(HEADS), *io.TORCH_TO_FLAX))
  assert variables["params"]["self_attn"]["query"]["kernel"].shape == (D, HEADS, D // HEADS)
  np.testing.assert_allclose(EncoderLayer().apply(variables, x_NLD), expected,
                             atol=ATOL, rtol=0)


def test_transformer_with_hugging_face_qkv_names(encoder):
  layer, x_NLD, expected = encoder
  sd = {k: v.numpy() for k, v in layer.state_dict().items()}
  for suffix in ("weight", "bias"):  # split torch's packed projection, HF style
    q, k, v = np.split(sd.pop(f"self_attn.in_proj_{suffix}"), 3)
    sd |= {f"self_attn.q_proj.{suffix}": q, f"self_attn.k_proj.{suffix}": k,
           f"self_attn.v_proj.{suffix}": v,
           f"self_attn.o_proj.{suffix}": sd.pop(f"self_attn.out_proj.{suffix}")}
  like = jax.eval_shape(EncoderLayer().init, jax.random.key(0), x_NLD)
  rules = (*io.hf_attention_rules(head_dim=D // HEADS), *io.TORCH_TO_FLAX)
  variables = io.load_torch(sd, like=like, rules=rules)
  np.testing.assert_allclose(EncoderLayer().apply(variables, x_NLD), expected,
                             atol=ATOL, rtol=0)


def test_without_attention_rules_strict_mode_names_the_packed_tensors(encoder):
  layer, x_NLD, _ = encoder
  like = jax.eval_shape(EncoderLayer().init, jax.random.key(0), x_NLD)
  with pytest.raises(io.StateDictMismatchError,
                     match=r"self_attn\.in_proj_weight \(no rule matches\)"):
    io.load_torch(layer.state_dict(), like=like)
