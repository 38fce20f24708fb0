"""`jatlas similarity` on a tiny zoo and `jatlas merge` on safetensors files."""
import os

import numpy as np
import pandas as pd
import pytest

from jatlas import cli, io, merge

CONFIG = os.path.join(os.path.dirname(__file__), "..", "zoo", "tiny_config.py")


def test_similarity_command_writes_matrix_and_heatmap(tmp_path, capsys):
  zoo_dir = str(tmp_path / "z")
  cli.main(["zoo", "train", f"--config={CONFIG}", "--out", zoo_dir, "--no-progress",
            "--config.zoo.members=2", "--config.zoo.epochs=(1,)", "--config.zoo.save_epochs=(1,)"])
  capsys.readouterr()
  cli.main(["similarity", zoo_dir, "--rows", "0", "--debiased", "--examples", "64",
            "--out", str(tmp_path / "s")])
  assert "linear_cka (debiased)" in capsys.readouterr().out
  m = pd.read_csv(tmp_path / "s" / "similarity.csv", index_col=0)
  assert list(m.index) == list(m.columns) and len(m) >= 2
  np.testing.assert_allclose(np.diag(m.to_numpy()), 1.0, atol=1e-4)
  assert os.path.getsize(tmp_path / "s" / "similarity.png") > 1000
  with pytest.raises(SystemExit, match="--metric cka"):
    cli.main(["similarity", zoo_dir, "--rows", "0,1", "--metric", "cka"])
  with pytest.raises(SystemExit, match="--rows 0,7"):
    cli.main(["similarity", zoo_dir, "--rows", "0,7"])


def test_merge_command_equals_the_function_and_records_the_recipe(tmp_path, capsys):
  rng = np.random.default_rng(0)
  paths = []
  for i in range(3):
    p = str(tmp_path / f"m{i}.safetensors")
    io.save_safetensors(p, {"params": {"fc": {"kernel": rng.normal(size=(5, 4)).astype(np.float32)}}})
    paths.append(p)
  out = str(tmp_path / "ties.safetensors")
  cli.main(["merge", "ties", "--base", paths[0], "--models", *paths[1:], "--out", out,
            "--density", "0.5"])
  got = io.load_file(out)["params/fc/kernel"]
  want = merge.ties(io.load_file(paths[0]), [io.load_file(p) for p in paths[1:]], 0.5)
  np.testing.assert_allclose(got, want["params/fc/kernel"], rtol=1e-6)
  recipe = merge.read_recipe(out)
  assert recipe["method"] == "ties" and recipe["params"] == {"density": 0.5, "lam": 1.0}
  assert recipe["parents"] == [os.path.abspath(p) for p in paths[1:]]
  with pytest.raises(SystemExit, match="needs --base"):
    cli.main(["merge", "dare", "--models", *paths[1:], "--out", out])
