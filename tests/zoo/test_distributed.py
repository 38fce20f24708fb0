"""Two `jax.distributed` processes on localhost train one population together."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jatlas.zoo import Zoo, train_zoo
from tiny_config import make_tiny_config

HERE = os.path.dirname(__file__)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("variant", ["", "cnn"])  # vmapped step; CPU member loop
def test_two_process_run_equals_single_process(tmp_path, variant):
  out = str(tmp_path / "dist")
  port = _free_port()
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": ""}
  cmd = [sys.executable, "-m", "jatlas.cli", "zoo", "train",
         f"--config={os.path.join(HERE, 'tiny_config.py')}" + (f":{variant}" if variant else ""), "--out", out, "--no-progress",
         "--config.zoo.members=5", "--config.zoo.epochs=(1,)", "--config.zoo.save_epochs=(1,)",
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
  procs = [subprocess.Popen(cmd + ["--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
  assert "5 members" in logs[0] and ("small_cnn" in logs[0]) == (variant == "cnn")
  dist = Zoo.open(out)
  assert dist.manifest["processes"] == 2 and dist.manifest["devices"] == 4
  cfg = make_tiny_config(cnn=variant == "cnn", members=5, epochs=(1,), save_epochs=(1,))
  single = train_zoo(cfg, str(tmp_path / "single"), progress=False)
  np.testing.assert_allclose(dist.flat(), single.flat(), rtol=1e-6, atol=1e-6)
  assert dist.table[["id", "seed", "task"]].equals(single.table[["id", "seed", "task"]])
