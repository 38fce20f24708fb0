"""Entry points expose one CPU device per core unless the user chose a count."""
import os
import subprocess
import sys

import pytest

SCRIPT = """
import jax
from jatlas.zoo.sharding import one_cpu_device_per_core
one_cpu_device_per_core()
print(jax.device_count())
one_cpu_device_per_core()  # once backends are up: a no-op, not an error
"""


@pytest.mark.parametrize("env_devices, want", [(None, os.cpu_count()), ("3", 3)])
def test_one_cpu_device_per_core(env_devices, want):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  env["JAX_PLATFORMS"] = "cpu"
  if env_devices:
    env["JAX_NUM_CPU_DEVICES"] = env_devices
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                       text=True, check=True)
  assert int(out.stdout.split()[-1]) == want
