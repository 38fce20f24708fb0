"""The start every experiment script shares: `--out DIR` plus a config, one CPU
device per core, compiled programs cached in DIR/jax_cache (reused by a rerun).

Usage:
  out, cfg = experiment.start(sys.argv[1:], __doc__)   # argv: --out DIR --config=FILE[:v]
"""
import argparse
import os
from typing import Sequence

from jatlas.compile_cache import use_compile_cache
from jatlas.config import load_config
from jatlas.zoo.sharding import one_cpu_device_per_core


def start(argv: Sequence[str], doc: str) -> tuple:
  """(out directory, locked config) after the shared set-up (module docstring)."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument("--out", required=True)
  args, rest = parser.parse_known_args(argv)
  one_cpu_device_per_core()
  use_compile_cache(os.path.join(args.out, "jax_cache"))
  return args.out, load_config(rest)
