"""Python config files with command-line overrides (ml_collections).

Usage:
  cfg = load_config(["--config=configs/hypernet_digits.py:smoke", "--config.zoo.members=64"])
"""
import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags


def load_config(argv: Sequence[str]):
  """Parses `--config=FILE[:variant]` plus `--config.a.b=value` overrides."""
  if not any(a.startswith("--config=") or a == "--config" for a in argv):
    raise SystemExit("missing --config=configs/<name>.py[:variant]")
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "experiment config", flag_values=fv,
                                  lock_config=True)
  old, sys.argv = sys.argv, ["jatlas", *argv]  # ml_collections reads overrides from sys.argv
  try:
    fv(sys.argv)
  finally:
    sys.argv = old
  return fv.config
