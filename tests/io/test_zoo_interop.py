"""Zoo members run in PyTorch; a zoo pushed to a stand-in Hub opens again
with hub.open_zoo from the (fake) Hugging Face cache."""
import inspect
import os
import pathlib
import shutil

import huggingface_hub as hf
import numpy as np
import pandas as pd
import pytest
import torch

import fake_hub
import torch_twins
from jatlas import data, io
from jatlas.io import hub
from jatlas.zoo import Zoo, ZooFormatError


def assert_member_runs_in_torch(zoo: Zoo, row: int) -> None:
  x_NHWC = data.load("digits", size=8).x_test[:16]
  state_dict = io.member_to_torch(zoo, row)
  twin = torch_twins.MLP(64, (16,), zoo.manifest["num_classes"])
  torch_twins.load_numpy(twin, state_dict)
  expected = zoo.model().apply(zoo.variables(row), x_NHWC)
  x_NCHW = torch.from_numpy(np.ascontiguousarray(x_NHWC.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(torch_twins.forward(twin.eval(), x_NCHW), expected,
                             atol=1e-5, rtol=0)


def test_every_member_runs_in_torch(tiny_zoo):
  for row in range(tiny_zoo.num_checkpoints):
    assert_member_runs_in_torch(tiny_zoo, row)
  with pytest.raises(IndexError, match=r"rows \[4\] out of range: .*\(table rows 0\.\.3\)"):
    io.member_to_torch(tiny_zoo, 4)


def test_push_then_open_from_hub(tiny_zoo, tmp_path):
  api = fake_hub.FakeHubApi(str(tmp_path / "hub"))
  info = hub.push_zoo(tiny_zoo.dir, "acme/tiny-zoo", api=api)
  assert info.commit_url.endswith(info.oid)
  (name, args, kwargs), (name2, args2, kwargs2) = api.calls
  assert (name, name2) == ("create_repo", "create_commit")
  # The calls must also be valid for the real HfApi.
  inspect.signature(hf.HfApi.create_repo).bind(None, *args, **kwargs)
  inspect.signature(hf.HfApi.create_commit).bind(None, *args2, **kwargs2)
  assert kwargs["repo_type"] == kwargs2["repo_type"] == "dataset"

  zoo = hub.open_zoo("acme/tiny-zoo", cache_dir=str(tmp_path / "hub"), verify=True)
  assert zoo.dir != tiny_zoo.dir and zoo.num_checkpoints == tiny_zoo.num_checkpoints == 4
  pd.testing.assert_frame_equal(zoo.table, tiny_zoo.table)
  for name in tiny_zoo.names:
    np.testing.assert_array_equal(zoo.stacked(name), tiny_zoo.stacked(name), err_msg=name)
  assert_member_runs_in_torch(zoo, zoo.num_checkpoints - 1)
  card = hub.read_card("acme/tiny-zoo", repo_type="dataset", cache_dir=str(tmp_path / "hub"))
  assert card.library_name == "jatlas" and "model-zoo" in card.tags
  assert "hub.open_zoo('acme/tiny-zoo')" in pathlib.Path(zoo.dir, "README.md").read_text()


def test_push_sends_only_the_zoo(tiny_zoo, tmp_path):
  zoo_dir = tmp_path / "zoo"
  shutil.copytree(tiny_zoo.dir, zoo_dir)
  (zoo_dir / "scratch.txt").write_text("not part of the zoo")
  (zoo_dir / "README.md").write_text("---\nlicense: mit\n---\n# mine\n")
  api = fake_hub.FakeHubApi(str(tmp_path / "hub"))
  hub.push_zoo(zoo_dir, "acme/z", api=api, private=True)
  ops = api.calls[1][1][1]
  shards = [s["file"] for s in tiny_zoo.manifest["shards"]]
  assert sorted(op.path_in_repo for op in ops) == sorted(
      ["README.md", "config.json", "members.parquet", "zoo.json", *shards])
  assert api.calls[0][2]["private"] is True
  card = hub.read_card("acme/z", repo_type="dataset", cache_dir=str(tmp_path / "hub"))
  assert card.license == "mit"


def test_damaged_zoo_is_not_pushed(tiny_zoo, tmp_path):
  zoo_dir = str(tmp_path / "zoo")
  shutil.copytree(tiny_zoo.dir, zoo_dir)
  os.remove(os.path.join(zoo_dir, tiny_zoo.manifest["shards"][0]["file"]))
  api = fake_hub.FakeHubApi(str(tmp_path / "hub"))
  with pytest.raises(ZooFormatError, match="zoo shard .*params-e0000.safetensors not found"):
    hub.push_zoo(zoo_dir, "acme/z", api=api)
  assert api.calls == []


def test_offline_push_with_the_real_client_fails_before_any_request(tiny_zoo):
  with pytest.raises(hf.errors.OfflineModeIsEnabled):
    hub.push_zoo(tiny_zoo.dir, "acme/never-pushed")


def test_zoo_not_in_cache(tmp_path):
  with pytest.raises(hf.errors.LocalEntryNotFoundError,
                     match=r"dataset repo 'acme/nothing' at revision v3"):
    hub.open_zoo("acme/nothing", revision="v3", cache_dir=str(tmp_path))
