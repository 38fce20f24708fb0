"""Zoo format: readable without jatlas, and clear errors for damaged zoos."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from jatlas.zoo import Zoo, ZooFormatError, train_zoo
from jatlas import files


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
  from tiny_config import make_tiny_config
  d = str(tmp_path_factory.mktemp("store") / "zoo")
  train_zoo(make_tiny_config(members=3, epochs=(1,), save_epochs=(0, 1)), d, progress=False)
  return d


@pytest.fixture
def copy(zoo_dir, tmp_path):
  d = str(tmp_path / "copy")
  shutil.copytree(zoo_dir, d)
  return d


def test_readable_with_safetensors_and_pandas_alone(zoo_dir):
  table = pd.read_parquet(os.path.join(zoo_dir, "members.parquet"))
  manifest = json.load(open(os.path.join(zoo_dir, "zoo.json")))
  row = table.iloc[4]
  tensors = load_file(os.path.join(zoo_dir, row["shard"]))
  assert set(tensors) == set(manifest["tensors"])
  zoo = Zoo.open(zoo_dir)
  for name, stacked in tensors.items():
    assert stacked.shape == (3, *manifest["tensors"][name]["shape"])
    np.testing.assert_array_equal(zoo.stacked(name, [4])[0], stacked[row["index"]])


def test_truncated_shard_names_the_file(copy):
  path = os.path.join(copy, "params-e0001.safetensors")
  blob = open(path, "rb").read()
  open(path, "wb").write(blob[: len(blob) - 100])
  with pytest.raises(ZooFormatError, match="corrupt or truncated zoo shard .*params-e0001"):
    Zoo.open(copy)


def test_missing_shard(copy):
  os.remove(os.path.join(copy, "params-e0000.safetensors"))
  with pytest.raises(ZooFormatError, match="missing zoo shard .*params-e0000"):
    Zoo.open(copy)


def test_shard_with_wrong_shape_or_tensors(copy):
  path = os.path.join(copy, "params-e0001.safetensors")
  tensors = load_file(path)
  tensors["params/fc1/kernel"] = tensors["params/fc1/kernel"][:, :10]
  save_file(tensors, path)
  with pytest.raises(ZooFormatError, match=r"params/fc1/kernel has shape \(3, 10, 16\), "
                                           r"expected \(3, 64, 16\)"):
    Zoo.open(copy)
  del tensors["params/fc1/kernel"]
  save_file(tensors, path)
  with pytest.raises(ZooFormatError, match="params/fc1/kernel.*differ from the manifest"):
    Zoo.open(copy)


def test_table_pointing_past_a_shard(copy):
  path = os.path.join(copy, "members.parquet")
  t = pd.read_parquet(path)
  t.loc[2, "index"] = 7
  t.to_parquet(path)
  with pytest.raises(ZooFormatError, match="point past their shard"):
    Zoo.open(copy)


def test_not_a_zoo(tmp_path):
  with pytest.raises(ZooFormatError, match="zoo.json not found"):
    Zoo.open(str(tmp_path))


def test_unknown_tensor_name(zoo_dir):
  with pytest.raises(KeyError, match="no tensor 'params/nope'"):
    Zoo.open(zoo_dir).stacked("params/nope")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  target = str(tmp_path / "x.safetensors")
  files.write_safetensors(target, {"a": np.ones(3, np.float32)})
  with pytest.raises(Exception):
    files.write_safetensors(target, {"a": np.array(["not", "numeric"], dtype=object)})
  assert os.listdir(tmp_path) == ["x.safetensors"]  # old file intact, no temp left
  np.testing.assert_array_equal(load_file(target)["a"], np.ones(3))


def test_transposed_views_are_saved_correctly(tmp_path):
  w = np.arange(12, dtype=np.float32).reshape(3, 4)
  files.write_safetensors(str(tmp_path / "t.safetensors"), {"w": w.T})
  np.testing.assert_array_equal(load_file(str(tmp_path / "t.safetensors"))["w"], w.T)
