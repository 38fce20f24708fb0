"""`jatlas convert`, `jatlas zoo push` and `jatlas hub card` end to end."""
import json
import os

import numpy as np
import pytest
import safetensors.torch

import fake_hub
import torch_twins
from jatlas import io
from jatlas.cli import main
from jatlas.io import hub


def test_torch2jax(tmp_path, capsys):
  twin, _, _, _ = torch_twins.make("resnet")
  src, out = str(tmp_path / "twin.safetensors"), str(tmp_path / "flax.safetensors")
  safetensors.torch.save_file(twin.state_dict(), src)
  main(["convert", "torch2jax", src, out])
  assert f"in flax layout to {out}" in capsys.readouterr().out
  assert io.read_metadata(out) == {"format": "flax"}
  expected = io.load_torch(src)
  kernel = io.read_tensor(out, "params/block2/conv1/kernel")
  np.testing.assert_array_equal(kernel, expected["params"]["block2"]["conv1"]["kernel"])
  np.testing.assert_array_equal(io.read_tensor(out, "batch_stats/stem_bn/var"),
                                twin.stem_bn.running_var.numpy())


@pytest.mark.parametrize("arch", [True, False], ids=["--arch", "generic"])
def test_jax2torch_runs_in_torch(arch, tmp_path):
  name = "lenet5" if arch else "resnet"  # the generic rules fit nets without a flatten
  twin, net, x, x_torch = torch_twins.make(name)
  variables = torch_twins.random_variables(net, x)
  src, out = str(tmp_path / "flax.safetensors"), str(tmp_path / "torch.safetensors")
  io.save_safetensors(src, variables)
  args = ["convert", "jax2torch", src, out]
  if arch:
    args += ["--arch", "lenet5", "--arch-kwargs", '{"num_classes": 2}', "--input-shape", "36,32,3"]
  main(args)
  twin.load_state_dict(safetensors.torch.load_file(out), strict=True)
  np.testing.assert_allclose(torch_twins.forward(twin, x_torch), net.apply(variables, x),
                             atol=1e-5, rtol=0)


def test_jax2torch_zoo_row(tiny_zoo, tmp_path):
  out = str(tmp_path / "member.safetensors")
  with pytest.raises(SystemExit, match="is a zoo: pass --row"):
    main(["convert", "jax2torch", tiny_zoo.dir, out])
  with pytest.raises(IndexError, match=r"rows \[999\] out of range: .* 4 checkpoints "
                                       r"\(table rows 0\.\.3\)"):
    main(["convert", "jax2torch", tiny_zoo.dir, out, "--row", "999"])
  assert not os.path.exists(out)
  main(["convert", "jax2torch", tiny_zoo.dir, out, "--row", "3"])
  expected = io.member_to_torch(tiny_zoo, 3)
  loaded = io.load_file(out)
  assert sorted(loaded) == sorted(expected)
  for k, v in expected.items():
    np.testing.assert_array_equal(loaded[k], v, err_msg=k)


def test_zoo_push(tiny_zoo, tmp_path, monkeypatch, capsys):
  api = fake_hub.FakeHubApi(str(tmp_path / "hub"))
  monkeypatch.setattr(hub.hf, "HfApi", lambda token=None: api)
  main(["zoo", "push", tiny_zoo.dir, "acme/cli-zoo", "--message", "first zoo"])
  assert capsys.readouterr().out.startswith("local://acme/cli-zoo/commit/")
  assert api.calls[-1][2]["commit_message"] == "first zoo"
  zoo = hub.open_zoo("acme/cli-zoo", cache_dir=str(tmp_path / "hub"))
  assert zoo.num_checkpoints == tiny_zoo.num_checkpoints == 4


def test_hub_card(capsys):
  fake_hub.add_to_cache(os.environ["HF_HUB_CACHE"], "acme/cli-card", {
      "README.md": "---\nbase_model: [acme/a, acme/b]\nbase_model_relation: merge\n"
                   "license: mit\n---\n"})
  main(["hub", "card", "acme/cli-card"])
  meta = json.loads(capsys.readouterr().out)
  assert meta["base_models"] == ["acme/a", "acme/b"] and meta["base_model_relation"] == "merge"
  assert meta["license"] == "mit" and meta["pipeline_tag"] is None
