"""A zoo run killed with SIGKILL resumes from its checkpoint to the same weights."""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np

from jatlas.zoo import Zoo, train_zoo
from tiny_config import make_tiny_config

CONFIG = os.path.join(os.path.dirname(__file__), "tiny_config.py")
OVERRIDES = {"members": "4", "epochs": "(12,)", "save_epochs": "(0, 6, 12)"}


def _cli(out):
  return [sys.executable, "-m", "jatlas.cli", "zoo", "train", f"--config={CONFIG}", "--out", out,
          "--no-progress", *[f"--config.zoo.{k}={v}" for k, v in OVERRIDES.items()]]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
  out = str(tmp_path / "killed")
  proc = subprocess.Popen(_cli(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + 300
  while not glob.glob(os.path.join(out, "train_state", "[0-9]*", "_CHECKPOINT_METADATA")):
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    assert time.time() < deadline, "no checkpoint within 300 s"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(out, "members.parquet"))
  subprocess.run(_cli(out), check=True, capture_output=True)
  resumed = Zoo.open(out)
  ref = train_zoo(make_tiny_config(members=4, epochs=(12,), save_epochs=(0, 6, 12)),
                  str(tmp_path / "ref"), progress=False)
  np.testing.assert_array_equal(resumed.flat(), ref.flat())
  assert list(resumed.table.id) == list(ref.table.id)
