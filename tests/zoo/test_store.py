"""Zoo format: readable without jatlas, and clear errors for damaged zoos."""
import hashlib
import json
import os
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from jatlas import cli, files
from jatlas.zoo import Zoo, ZooFormatError, store, train_zoo


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
  with pytest.raises(ZooFormatError, match="corrupt or truncated safetensors file .*params-e0001"):
    Zoo.open(copy)


def test_missing_shard(copy):
  os.remove(os.path.join(copy, "params-e0000.safetensors"))
  with pytest.raises(ZooFormatError, match="zoo shard .*params-e0000.safetensors not found"):
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


def _header_end(path: str) -> int:
  """Byte offset where a safetensors file's data region starts (after the JSON header)."""
  with open(path, "rb") as f:
    return 8 + struct.unpack("<Q", f.read(8))[0]


def _edit_header(path: str, name: str, old: bytes, new: bytes) -> None:
  """Replaces `old` by `new` (same length) in tensor `name`'s header entry, in place."""
  blob = bytearray(open(path, "rb").read())
  at = blob.index(old, blob.index(json.dumps(name).encode()), _header_end(path))
  blob[at:at + len(old)] = new
  open(path, "wb").write(bytes(blob))


def _edit_manifest(zoo_dir: str, edit) -> None:
  path = os.path.join(zoo_dir, "zoo.json")
  manifest = json.load(open(path))
  edit(manifest)
  json.dump(manifest, open(path, "w"))


def test_counts_say_what_they_count(zoo_dir):
  zoo = Zoo.open(zoo_dir)
  assert zoo.num_members == 3 and zoo.num_checkpoints == 6  # 3 members x epochs 0, 1
  assert "members=3" in repr(zoo) and "checkpoints=6" in repr(zoo)
  with pytest.raises(TypeError):
    len(zoo)  # ambiguous between members and checkpoints


def test_stacked_variables_match_the_raw_shards(zoo_dir):
  zoo, rows = Zoo.open(zoo_dir), [5, 0, 3]
  got = zoo.stacked_variables(rows)
  shards = {f: load_file(os.path.join(zoo_dir, f)) for f in zoo.table["shard"].unique()}
  t = zoo.table.iloc[rows]
  for name in zoo.names:
    collection, module, leaf = name.split("/")
    expected = np.stack([shards[f][name][i] for f, i in zip(t["shard"], t["index"])])
    np.testing.assert_array_equal(got[collection][module][leaf], expected, err_msg=name)
  one = zoo.variables(3)
  np.testing.assert_array_equal(one["params"]["fc1"]["kernel"], got["params"]["fc1"]["kernel"][2])
  only = zoo.stacked_variables(rows, names=["params/fc1/bias"])
  assert store.flatten_variables(only).keys() == {"params/fc1/bias"}


def test_rows_out_of_range_name_the_valid_range(zoo_dir):
  zoo = Zoo.open(zoo_dir)
  with pytest.raises(IndexError, match=r"rows \[999\] out of range: .* 6 checkpoints "
                                       r"\(table rows 0\.\.5\)"):
    zoo.variables(999)
  with pytest.raises(IndexError, match=r"rows \[-7, 6\]"):
    zoo.stacked("params/fc1/bias", [0, -7, 6])
  np.testing.assert_array_equal(zoo.stacked("params/fc1/bias", [-1]),
                                zoo.stacked("params/fc1/bias", [5]))
  mask = (zoo.table["epoch"] == 1).to_numpy()
  np.testing.assert_array_equal(zoo.flat(mask), zoo.flat(np.flatnonzero(mask)))


def test_shard_header_dtype_edit_is_refused(copy):
  path = os.path.join(copy, "params-e0001.safetensors")
  _edit_header(path, "params/fc1/kernel", b'"F32"', b'"I32"')  # same length: still parses
  expected = r"params-e0001.safetensors: tensor params/fc1/kernel is stored as int32, " \
             r"but zoo.json says float32"
  with pytest.raises(ZooFormatError, match=expected):
    Zoo.open(copy)
  with pytest.raises(ZooFormatError, match=expected):
    cli.main(["zoo", "info", copy])
  zoo = Zoo.open(copy, check=False)
  with pytest.raises(ZooFormatError, match=expected):
    zoo.stacked("params/fc1/kernel")  # never the float bits read as integers
  with pytest.raises(ZooFormatError, match=expected):
    zoo.variables(5)  # an epoch-1 row
  zoo.variables(0)  # epoch-0 rows live in the intact shard
  assert zoo.stacked("params/fc1/bias").dtype == np.float32  # other tensors still read


def test_manifest_dtype_edit_is_refused(copy):
  _edit_manifest(copy, lambda m: m["tensors"]["params/fc1/kernel"].update(dtype="int32"))
  expected = r"params-e000[01].safetensors: tensor params/fc1/kernel is stored as float32, " \
             r"but zoo.json says int32"
  with pytest.raises(ZooFormatError, match=expected):
    Zoo.open(copy)
  with pytest.raises(ZooFormatError, match=expected):
    Zoo.open(copy, check=False).stacked("params/fc1/kernel")


def test_every_header_problem_is_listed_at_once(copy):
  _edit_header(os.path.join(copy, "params-e0000.safetensors"), "params/fc1/bias",
               b'"F32"', b'"I32"')
  _edit_manifest(copy, lambda m: m["tensors"]["params/head/kernel"].update(dtype="float16"))
  with pytest.raises(ZooFormatError) as e:
    Zoo.open(copy)
  problems = str(e.value).splitlines()
  assert len(problems) == 3, problems  # bias in shard 0; head/kernel in both shards
  assert sum("params/head/kernel" in p for p in problems) == 2
  os.remove(os.path.join(copy, "params-e0000.safetensors"))
  with pytest.raises(ZooFormatError) as e:
    Zoo.open(copy)
  problems = str(e.value).splitlines()
  assert len(problems) == 2 and "params-e0000.safetensors not found" in problems[0], problems
  assert "params-e0001.safetensors: tensor params/head/kernel" in problems[1]


def test_write_shard_returns_its_manifest_entry_with_checksum(tmp_path):
  w = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  entry = store.write_shard(str(tmp_path), 7, {"params/a/kernel": w, "params/a/bias": w[:, 0]})
  blob = (tmp_path / "params-e0007.safetensors").read_bytes()
  assert entry == {"file": "params-e0007.safetensors", "epoch": 7, "members": 2,
                   "sha256": hashlib.sha256(blob).hexdigest()}
  with pytest.raises(ValueError, match="one leading member axis"):
    store.write_shard(str(tmp_path), 8, {"a": w, "b": w[:1]})


def test_manifest_records_each_shards_checksum(zoo_dir):
  shards = Zoo.open(zoo_dir).manifest["shards"]
  assert [s["file"] for s in shards] == ["params-e0000.safetensors", "params-e0001.safetensors"]
  for s in shards:
    blob = open(os.path.join(zoo_dir, s["file"]), "rb").read()
    assert s["sha256"] == hashlib.sha256(blob).hexdigest()


def test_verify_names_every_flipped_shard(copy, capsys):
  cli.main(["zoo", "verify", copy])
  assert capsys.readouterr().out == "ok: 2 shards verified\n"
  for shard in ("params-e0000.safetensors", "params-e0001.safetensors"):
    path = os.path.join(copy, shard)
    blob = bytearray(open(path, "rb").read())
    blob[_header_end(path) + 10] ^= 0x01  # in the data region: the header still parses
    open(path, "wb").write(bytes(blob))
  Zoo.open(copy)  # headers are intact: without verify the zoo opens
  with pytest.raises(ZooFormatError, match=r"(?s)2 of 2 shards fail verification.*"
                                           r"params-e0000.*params-e0001"):
    Zoo.open(copy, verify=True)
  with pytest.raises(SystemExit, match=r"(?s)params-e0000.safetensors: sha256 [0-9a-f]{64}, "
                                       r"zoo.json records .*params-e0001"):
    cli.main(["zoo", "verify", copy])


def test_zoo_without_checksums_says_so(copy, capsys):
  _edit_manifest(copy, lambda m: [s.pop("sha256") for s in m["shards"]])
  Zoo.open(copy)
  with pytest.raises(ZooFormatError, match="records no shard checksums .* none of its 2 shards"):
    Zoo.open(copy, verify=True)
  with pytest.raises(SystemExit, match="records no shard checksums"):
    cli.main(["zoo", "verify", copy])
  assert "ok" not in capsys.readouterr().out
  _edit_manifest(copy, lambda m: m["shards"][1].update(sha256="0" * 64))
  with pytest.raises(ZooFormatError, match=r"(?s)2 of 2 shards fail.*params-e0000.safetensors: "
                                           r"no sha256 in zoo.json.*params-e0001.safetensors: "
                                           r"sha256 [0-9a-f]{64}, zoo.json records 0{64}"):
    Zoo.open(copy, verify=True)


@pytest.mark.parametrize("text", ['{"format": "jatlas-zoo", "tensors": {', "not json", "\xff"],
                         ids=["truncated", "not json", "not utf-8"])
def test_damaged_manifest_names_the_file(copy, text):
  with open(os.path.join(copy, "zoo.json"), "w", encoding="latin-1") as f:
    f.write(text)
  with pytest.raises(ZooFormatError, match=r"zoo.json is not valid JSON"):
    Zoo.open(copy)


def test_manifest_missing_keys_are_listed(copy):
  _edit_manifest(copy, lambda m: [m.pop("tensors"), m.pop("input_shape")])
  with pytest.raises(ZooFormatError, match=r"zoo.json: missing keys \['input_shape', 'tensors'\]"):
    Zoo.open(copy)


def test_zoo_files_share_the_umask_mode(zoo_dir):
  umask = os.umask(0)
  os.umask(umask)
  modes = {f: oct(os.stat(os.path.join(zoo_dir, f)).st_mode & 0o777)
           for f in os.listdir(zoo_dir) if os.path.isfile(os.path.join(zoo_dir, f))}
  assert {"zoo.json", "members.parquet", "params-e0000.safetensors"} <= modes.keys()
  assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
  old = os.umask(umask)
  try:
    files.write_safetensors(str(tmp_path / "a.safetensors"), {"a": np.ones(2, np.float32)})
    files.write_json(str(tmp_path / "a.json"), {"a": 1})
    files.write_parquet(str(tmp_path / "a.parquet"), pd.DataFrame({"a": [1]}))
  finally:
    os.umask(old)
  for f in os.listdir(tmp_path):
    assert os.stat(tmp_path / f).st_mode & 0o777 == 0o666 & ~umask, f
