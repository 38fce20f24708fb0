"""The rule table: names, layouts, dtypes, extension, and load_torch's sources."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch

from jatlas import io
from jatlas.io import torch_names

RNG = np.random.default_rng(0)


def _rand(*shape):
  return RNG.normal(size=shape).astype(np.float32)


def test_torchvision_style_names_and_layouts():
  sd = {"layer1.0.conv1.weight": _rand(8, 3, 3, 5), "layer1.0.bn1.weight": _rand(8),
        "layer1.0.bn1.bias": _rand(8), "layer1.0.bn1.running_mean": _rand(8),
        "layer1.0.bn1.running_var": _rand(8),
        "layer1.0.bn1.num_batches_tracked": np.array(3, np.int64),
        "fc.weight": _rand(10, 8), "fc.bias": _rand(10)}
  v = io.load_torch(sd)
  assert sorted(v) == ["batch_stats", "params"]
  conv = v["params"]["layer1"]["0"]["conv1"]["kernel"]
  assert conv.shape == (3, 5, 3, 8)  # OIHW -> HWIO
  o, i, h, w = 5, 2, 1, 4
  assert conv[h, w, i, o] == sd["layer1.0.conv1.weight"][o, i, h, w]
  np.testing.assert_array_equal(v["params"]["fc"]["kernel"], sd["fc.weight"].T)
  assert sorted(v["params"]["layer1"]["0"]["bn1"]) == ["bias", "scale"]
  assert sorted(v["batch_stats"]["layer1"]["0"]["bn1"]) == ["mean", "var"]
  np.testing.assert_array_equal(v["batch_stats"]["layer1"]["0"]["bn1"]["var"],
                                sd["layer1.0.bn1.running_var"])


def test_conv1d_layernorm_embedding_and_legacy_names():
  sd = {"conv.weight": _rand(6, 2, 5), "ln.weight": _rand(4), "ln.bias": _rand(4),
        "old_ln.gamma": _rand(4), "old_ln.beta": _rand(4),
        "embeddings.word_embeddings.weight": _rand(50, 4), "wte.weight": _rand(9, 4),
        "member.weight": _rand(3, 4)}
  p = io.load_torch(sd)["params"]
  np.testing.assert_array_equal(p["conv"]["kernel"], sd["conv.weight"].transpose(2, 1, 0))
  assert sorted(p["ln"]) == ["bias", "scale"] and sorted(p["old_ln"]) == ["bias", "scale"]
  np.testing.assert_array_equal(p["embeddings"]["word_embeddings"]["embedding"],
                                sd["embeddings.word_embeddings.weight"])  # not transposed
  assert p["wte"]["embedding"].shape == (9, 4)
  np.testing.assert_array_equal(p["member"]["kernel"], sd["member.weight"].T)  # a Linear


def test_flax_to_torch_inverts_torch_to_flax():
  sd = {"a.conv.weight": _rand(4, 3, 3, 3), "a.c1d.weight": _rand(4, 3, 5),
        "a.bn.weight": _rand(4), "a.bn.bias": _rand(4), "a.bn.running_mean": _rand(4),
        "a.bn.running_var": _rand(4), "a.bn.num_batches_tracked": np.array(0, np.int64),
        "emb.weight": _rand(7, 4), "fc.weight": _rand(2, 4), "fc.bias": _rand(2)}
  flat = torch_names.apply_rules(sd, io.TORCH_TO_FLAX).tensors
  back = torch_names.apply_rules(flat, io.FLAX_TO_TORCH)
  assert not back.unmatched and sorted(back.tensors) == sorted(sd)
  for k, v in sd.items():
    np.testing.assert_array_equal(back.tensors[k], v, err_msg=k)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtypes_are_kept(dtype, tmp_path):
  torch.manual_seed(0)
  sd = {"fc.weight": torch.randn(3, 5).to(dtype), "conv.weight": torch.randn(2, 3, 3, 3).to(dtype)}
  path = str(tmp_path / "half.safetensors")
  safetensors.torch.save_file(sd, path)
  for source in (path, sd):  # from a file and from torch tensors in memory
    p = io.load_torch(source)["params"]
    expected = {torch.float16: np.float16, torch.bfloat16: jnp.bfloat16}[dtype]
    assert p["fc"]["kernel"].dtype == expected and p["conv"]["kernel"].dtype == expected
    np.testing.assert_array_equal(p["fc"]["kernel"].astype(np.float32),
                                  sd["fc.weight"].float().numpy().T)


def test_caller_rules_come_first():
  def as_kernel(match, a):
    return {f"params/{match['m']}/kernel": a.T}
  rules = (torch_names.Rule(r"(?P<m>patch_emb)\.weight", as_kernel, ndim=2),
           *io.TORCH_TO_FLAX)
  sd = {"patch_emb.weight": _rand(3, 5)}
  assert "embedding" in io.load_torch(sd)["params"]["patch_emb"]
  np.testing.assert_array_equal(io.load_torch(sd, rules=rules)["params"]["patch_emb"]["kernel"],
                                sd["patch_emb.weight"].T)


def test_two_names_for_one_parameter_is_an_error():
  with pytest.raises(ValueError, match=r"'ln\.weight' and 'ln\.gamma' both convert to "
                                       r"'params/ln/scale'"):
    io.load_torch({"ln.gamma": _rand(4), "ln.weight": _rand(4)})


def test_sharded_checkpoint_and_folder(tmp_path):
  sd = {"a.weight": _rand(3, 2), "a.bias": _rand(3), "b.weight": _rand(4, 3)}
  io.save_safetensors(str(tmp_path / "m-1.safetensors"), {k: sd[k] for k in ("a.weight", "a.bias")})
  io.save_safetensors(str(tmp_path / "m-2.safetensors"), {"b.weight": sd["b.weight"]})
  index = {"metadata": {}, "weight_map": {"a.weight": "m-1.safetensors",
                                          "a.bias": "m-1.safetensors",
                                          "b.weight": "m-2.safetensors"}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  v = io.load_torch(str(tmp_path))  # the folder finds the index
  np.testing.assert_array_equal(v["params"]["b"]["kernel"], sd["b.weight"].T)
  index["weight_map"]["c.weight"] = "m-2.safetensors"
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  with pytest.raises(io.CheckpointError, match=r"m-2\.safetensors lacks \['c\.weight'\]"):
    io.load_torch(str(tmp_path / "model.safetensors.index.json"))
  (tmp_path / "model.safetensors.index.json").write_text("{}")
  with pytest.raises(io.CheckpointError, match="is not a sharded-checkpoint index"):
    io.load_torch(str(tmp_path))


def test_pickles_and_empty_folders_are_refused(tmp_path):
  with pytest.raises(io.CheckpointError, match=r"model\.bin is a pickled torch checkpoint"):
    io.load_torch(str(tmp_path / "model.bin"))
  with pytest.raises(io.CheckpointError, match="holds neither model.safetensors"):
    io.load_torch(str(tmp_path))
