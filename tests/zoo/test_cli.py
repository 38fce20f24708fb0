"""`jatlas zoo train` and `jatlas zoo info` through the command-line entry point."""
import os

import pytest

from jatlas import cli
from jatlas.config import load_config
from jatlas.zoo import Zoo

CONFIG = os.path.join(os.path.dirname(__file__), "tiny_config.py")


def test_train_with_overrides_then_info(tmp_path, capsys):
  out = str(tmp_path / "z")
  cli.main(["zoo", "train", f"--config={CONFIG}", "--out", out, "--no-progress",
            "--config.zoo.members=4", "--config.zoo.epochs=(1,)",
            "--config.zoo.save_epochs=(1,)", "--config.zoo.lr=(0.01, 0.02)"])
  printed = capsys.readouterr().out
  assert "mlp" in printed and "4 members" in printed
  zoo = Zoo.open(out)
  assert zoo.num_members == zoo.num_checkpoints == 4 and sorted(zoo.table.lr.unique()) == pytest.approx([0.01, 0.02])
  cli.main(["zoo", "info", out])
  info = capsys.readouterr().out
  assert "4 members, 4 checkpoints" in info and "1 shards" in info
  cli.main(["zoo", "verify", out])
  assert capsys.readouterr().out == "ok: 1 shards verified\n"


def test_config_typos_and_bad_values_are_rejected():
  with pytest.raises(AttributeError, match="Did you mean \"members\""):
    load_config([f"--config={CONFIG}", "--config.zoo.membrs=3"])
  with pytest.raises(SystemExit, match="bad config override: .*members=many"):
    load_config([f"--config={CONFIG}", "--config.zoo.members=many"])
  with pytest.raises(SystemExit, match="missing --config"):
    load_config(["--config.zoo.members=3"])


def test_info_on_a_folder_that_is_not_a_zoo(tmp_path):
  from jatlas.zoo import ZooFormatError
  with pytest.raises(ZooFormatError, match="zoo.json not found"):
    cli.main(["zoo", "info", str(tmp_path)])
