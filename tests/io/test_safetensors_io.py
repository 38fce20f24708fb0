"""read_tensor / read_layer / save_safetensors: exact values, dtypes, layouts,
metadata, atomic writes and errors naming the file."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from jatlas import flat_names, io, tensor_files

RNG = np.random.default_rng(0)


@pytest.fixture
def checkpoints(tmp_path):
  """Five torch checkpoints with the same names; returns (paths, state dicts)."""
  paths, sds = [], []
  for i in range(5):
    torch.manual_seed(i)
    sd = {"conv.weight": torch.randn(4, 3, 3, 3), "fc.weight": torch.randn(2, 36),
          "fc.bias": torch.randn(2)}
    paths.append(str(tmp_path / f"ckpt{i}.safetensors"))
    safetensors.torch.save_file(sd, paths[-1])
    sds.append(sd)
  return paths, sds


def test_read_tensor_and_layer(checkpoints):
  paths, sds = checkpoints
  np.testing.assert_array_equal(io.read_tensor(paths[2], "fc.weight"), sds[2]["fc.weight"].numpy())
  layer = io.read_layer(paths, "conv.weight")
  assert layer.shape == (5, 4, 3, 3, 3) and layer.dtype == np.float32
  for i, sd in enumerate(sds):
    np.testing.assert_array_equal(layer[i], sd["conv.weight"].numpy())
  assert io.tensor_shapes(paths[0]) == {"conv.weight": (4, 3, 3, 3), "fc.weight": (2, 36),
                                        "fc.bias": (2,)}


def test_read_layer_names_the_odd_file(checkpoints, tmp_path):
  paths, _ = checkpoints
  odd = str(tmp_path / "odd.safetensors")
  safetensors.torch.save_file({"fc.weight": torch.zeros(2, 35)}, odd)
  with pytest.raises(io.CheckpointError,
                     match=rf"{odd}: tensor 'fc.weight' is float32\[2, 35\], but "
                           rf"{paths[0]} has float32\[2, 36\]"):
    io.read_layer([*paths, odd], "fc.weight")
  with pytest.raises(io.CheckpointError, match=rf"{odd} has no tensor 'fc.bias'"):
    io.read_layer([paths[0], odd], "fc.bias")
  with pytest.raises(io.CheckpointError, match=r"no tensor 'fc.weigth' .*close: fc.weight"):
    io.read_tensor(paths[0], "fc.weigth")
  with pytest.raises(ValueError, match="at least one file"):
    io.read_layer([], "fc.weight")


def test_non_contiguous_arrays_are_saved_correctly(tmp_path):
  w = RNG.normal(size=(6, 8)).astype(np.float32)
  views = {"transposed": w.T, "strided": w[:, ::3], "reversed": w[::-1],
           "hwio": RNG.normal(size=(4, 3, 2, 5)).astype(np.float32).transpose(2, 3, 1, 0),
           "jax_transposed": jnp.asarray(w).T}
  assert not any(v.flags.c_contiguous for k, v in views.items() if k != "jax_transposed")
  path = str(tmp_path / "views.safetensors")
  io.save_safetensors(path, views)
  loaded = safetensors.numpy.load_file(path)  # an independent reader
  for k, v in views.items():
    np.testing.assert_array_equal(loaded[k], np.asarray(v), err_msg=k)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.float32])
def test_dtype_kept(dtype, tmp_path):
  w = RNG.normal(size=(3, 4)).astype(dtype)
  path = str(tmp_path / "w.safetensors")
  io.save_safetensors(path, {"params": {"fc": {"kernel": w.T, "bias": jnp.asarray(w[0])}}})
  kernel = io.read_tensor(path, "params/fc/kernel")
  assert kernel.dtype == np.dtype(dtype) and io.read_tensor(path, "params/fc/bias").dtype == dtype
  np.testing.assert_array_equal(kernel, w.T)
  expected = {np.float16: torch.float16, jnp.bfloat16: torch.bfloat16,
              np.float32: torch.float32}[dtype]
  assert safetensors.torch.load_file(path)["params/fc/kernel"].dtype == expected


def test_metadata_is_strings_only(tmp_path):
  path = str(tmp_path / "m.safetensors")
  io.save_safetensors(path, {"w": np.zeros(2, np.float32)}, {"format": "flax", "epoch": "3"})
  assert io.read_metadata(path) == {"format": "flax", "epoch": "3"}
  with pytest.raises(TypeError, match=r"str to str; .*m2.safetensors: got \{'epoch': 'int'\}"):
    io.save_safetensors(str(tmp_path / "m2.safetensors"), {"w": np.zeros(2)}, {"epoch": 3})
  assert not os.path.exists(tmp_path / "m2.safetensors")


def test_failed_write_leaves_the_old_file(tmp_path):
  path = str(tmp_path / "w.safetensors")
  io.save_safetensors(path, {"w": np.ones(3, np.float32)})
  with pytest.raises(Exception):
    io.save_safetensors(path, {"w": np.zeros(3, np.float32),
                               "bad": np.array(["not", "numbers"], dtype=object)})
  np.testing.assert_array_equal(io.read_tensor(path, "w"), np.ones(3, np.float32))
  assert os.listdir(tmp_path) == ["w.safetensors"]  # no temp file left behind


def test_tensor_files_header_and_slices_match_an_independent_reader(tmp_path):
  path = str(tmp_path / "h.safetensors")
  tensors = {"w": RNG.normal(size=(5, 3)).astype(np.float32), "i": np.arange(4, dtype=np.int64),
             "h": RNG.normal(size=(2, 2)).astype(jnp.bfloat16)}
  io.save_safetensors(path, tensors)
  with tensor_files.open_tensors(path) as f:
    assert f.header() == {k: tensor_files.TensorInfo(v.shape, np.dtype(v.dtype).name)
                          for k, v in tensors.items()}
    rows = f.read("w", 1, 4)
  np.testing.assert_array_equal(rows, safetensors.numpy.load_file(path)["w"][1:4])
  with pytest.raises(tensor_files.TensorFileError, match=r"has no tensor 'ww' .*close: w"):
    with tensor_files.open_tensors(path) as f:
      f.read("ww")
  with pytest.raises(KeyError, match="the caller's error"):
    with tensor_files.open_tensors(tmp_path / "nope", error=KeyError, what="the caller's error"):
      pass


def test_flat_names_round_trip_and_refuse_collisions():
  w = np.zeros((2, 3))
  nested = {"params": {"conv1": {"kernel": w, "bias": w[0]}}, "batch_stats": {"bn": {"mean": w}}}
  flat = flat_names.flatten_variables(nested)
  assert sorted(flat) == ["batch_stats/bn/mean", "params/conv1/bias", "params/conv1/kernel"]
  assert flat["params/conv1/bias"] is nested["params"]["conv1"]["bias"]
  assert flat_names.flatten_variables(flat) == flat  # already flat: unchanged
  back = flat_names.unflatten_variables(flat)
  assert back["params"]["conv1"]["kernel"] is w and back.keys() == nested.keys()
  with pytest.raises(ValueError, match=r"share flat names: \['params/fc/kernel'\]"):
    flat_names.flatten_variables({"params/fc": {"kernel": w}, "params": {"fc": {"kernel": w}}})
