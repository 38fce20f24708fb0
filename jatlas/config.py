"""Python config files with command-line overrides (ml_collections).

A config file defines `get_config(arg=None)`; `FILE:variant` passes "variant" as arg.

Usage:
  cfg = load_config(["--config=configs/hypernet_digits.py:smoke", "--config.zoo.members=64"])
"""
import os
from typing import Sequence

from absl import flags
from ml_collections import config_flags


def _config_path(argv: Sequence[str]) -> str:
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1].split(":", 1)[0]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1].split(":", 1)[0]
  raise SystemExit("missing --config=configs/<name>.py[:variant]")


def load_config(argv: Sequence[str]):
  """Parses `--config=FILE[:variant]` plus `--config.a.b=value` overrides -> locked config."""
  path = _config_path(argv)
  if not os.path.isfile(path):
    raise SystemExit(f"config file {path} not found")
  fv = flags.FlagValues()
  argv = ["jatlas", *argv]
  config_flags.DEFINE_config_file("config", None, "experiment config", flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  try:
    fv(argv)
  except flags.IllegalFlagValueError as e:  # an override that does not parse as its type
    raise SystemExit(f"bad config override: {e}") from None
  return fv.config
