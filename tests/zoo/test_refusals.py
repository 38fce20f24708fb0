"""A zoo that refuses to lie: each way a new user's run could silently go wrong is refused
with a clear error (or marked), and nothing is left half-written."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from jatlas import cli
from jatlas.zoo import (ConfigError, ParentMismatchError, ResumeMismatchError, ZooInUseError,
                        train_zoo)
from jatlas.zoo.checkpoint import TrainCheckpoints
from tiny_config import make_tiny_config

CONFIG = os.path.join(os.path.dirname(__file__), "tiny_config.py")


def small(**kw):
  return make_tiny_config(**{"members": 3, "epochs": (2,), "save_epochs": (0, 2), **kw})


class Killed(Exception):
  pass


def kill_at_checkpoint(monkeypatch, n: int, saved: bool):
  """The n-th checkpoint raises Killed, after saving (saved) or before it."""
  save, calls = TrainCheckpoints.save, []

  def save_or_die(self, *args, **kw):
    calls.append(1)
    if len(calls) == n and not saved:
      raise Killed
    save(self, *args, **kw)
    if len(calls) == n:
      raise Killed

  monkeypatch.setattr(TrainCheckpoints, "save", save_or_die)


def interrupted(tmp_path, monkeypatch, cfg, n=1, saved=True) -> str:
  out = str(tmp_path / "z")
  with monkeypatch.context() as m:
    kill_at_checkpoint(m, n, saved)
    with pytest.raises(Killed):
      train_zoo(cfg, out, progress=False)
  return out


@pytest.mark.parametrize("change, fields", [
    ({"lr": (2e-2,)}, ["zoo.lr"]),
    ({"members": 4}, ["zoo.members"]),
])
def test_resume_with_another_config_is_refused(tmp_path, monkeypatch, change, fields):
  out = interrupted(tmp_path, monkeypatch, small())
  with pytest.raises(ResumeMismatchError, match="unfinished run") as e:
    train_zoo(small(**change), out, progress=False)
  for f in fields:
    assert f in str(e.value)
  assert "zoo.batch_size" not in str(e.value)  # only the differing fields are named
  assert not os.path.exists(os.path.join(out, "members.parquet"))
  z = train_zoo(small(), out, progress=False)  # the original config still resumes
  assert z.num_members == 3 and (z.table.lr == np.float32(1e-2)).all()


def test_resume_with_other_data_is_refused(tmp_path, monkeypatch):
  out = interrupted(tmp_path, monkeypatch, small())
  other = small()
  other.tasks.kwargs = {"pairs": ((0, 1), (2, 3), (4, 6))}
  with pytest.raises(ResumeMismatchError) as e:
    train_zoo(other, out, progress=False)
  assert "tasks.kwargs.pairs" in str(e.value) and "data_sha256" in str(e.value)


def test_kill_between_evaluation_and_checkpoint_logs_each_epoch_once(tmp_path, monkeypatch):
  cfg = small(epochs=(3,), save_epochs=(0, 3), eval_every=1)
  out = interrupted(tmp_path, monkeypatch, cfg, n=2, saved=False)  # epoch 2 logged, not saved
  logged = [json.loads(l)["epoch"] for l in open(os.path.join(out, "metrics.jsonl"))]
  assert logged == [0, 1, 2]
  z = train_zoo(cfg, out, progress=False)
  assert [json.loads(l)["epoch"] for l in open(os.path.join(z.dir, "metrics.jsonl"))] == \
      [0, 1, 2, 3]
  assert sorted(os.listdir(z.dir)) == ["config.json", "members.parquet", "metrics.jsonl",
                                       "params-e0000.safetensors", "params-e0003.safetensors",
                                       "zoo.json"]  # no lock, run record or train state left


HOLD_LOCK = """
import sys, time
from jatlas.zoo.lock import exclusive
with exclusive(sys.argv[1]):
  print("locked", flush=True)
  time.sleep(600)
"""


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
  out = str(tmp_path / "z")
  holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, out], stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ZooInUseError, match=f"in use by PID {holder.pid}"):
      train_zoo(small(), out, progress=False)
    assert os.listdir(out) == [".lock"]  # the refused writer touched nothing
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  z = train_zoo(small(), out, progress=False)  # a dead holder's lock is free again
  assert z.num_members == 3


def test_exploding_loss_is_marked_diverged(tmp_path):
  # tanh saturates, so lr 1e30 blows the loss up to ~1e31 without ever making it NaN
  cfg = small(lr=(1e-2, 1e30), members=4, epochs=(1,), save_epochs=(1,))
  cfg.model.kwargs = {"hidden": (16,), "activation": "tanh"}
  z = train_zoo(cfg, str(tmp_path / "z"), progress=False)
  t = z.table.set_index("member")
  assert list(t.status) == ["ok", "ok", "ok", "diverged"]  # members 3 has lr 1e30
  assert t.diverged_step[3] >= 0 and (t.diverged_step[:3] == -1).all()
  assert "diverged members: 1" in cli.zoo_summary(z)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "zoo.batch_size=0: must be >= 1"),
    ("lr", (float("nan"),), r"zoo.lr=\(nan,\): \[nan\] not finite and > 0"),
    ("lr", (-1e-3,), "not finite and > 0"),
    ("lr", (), "empty grid"),
    ("epochs", (), "empty grid"),
    ("optimizer", ("adamw",), "unknown 'adamw' \\(did you mean 'adam'\\?\\)"),
])
def test_bad_config_values_are_refused_before_anything_is_written(tmp_path, field, value,
                                                                  message):
  out = tmp_path / "z"
  with pytest.raises(ConfigError, match=message):
    train_zoo(small(**{field: value}), str(out), progress=False)
  assert not out.exists()


def test_every_bad_field_is_listed_at_once(tmp_path):
  cfg = small(batch_size=-1, lr=(0.0,), optimizer=("sgd", "adan"))
  cfg.model.name = "lenet"
  with pytest.raises(ConfigError, match="4 invalid field") as e:
    train_zoo(cfg, str(tmp_path / "z"), progress=False)
  for part in ("zoo.batch_size", "zoo.lr", "'adan'", "model.name='lenet'"):
    assert part in str(e.value)


def test_missing_config_file_and_help(tmp_path, capsys):
  with pytest.raises(SystemExit, match=r"^config file .*nope.py not found$"):
    cli.main(["zoo", "train", "--config", str(tmp_path / "nope.py"), "--out", str(tmp_path / "z")])
  assert not (tmp_path / "z").exists()
  with pytest.raises(SystemExit):
    cli.main(["zoo", "train", "--help"])
  text = capsys.readouterr().out
  assert "--config FILE[:VARIANT]" in text and "jatlas zoo train --config configs/" in text


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
  """A 2-class parent zoo (class pairs)."""
  cfg = make_tiny_config(members=2, epochs=(1,), save_epochs=(1,))
  return train_zoo(cfg, str(tmp_path_factory.mktemp("parent") / "z"), progress=False)


def child_config(parent_dir, **zoo):
  cfg = make_tiny_config(members=2, epochs=(1,), save_epochs=(0, 1), parent=parent_dir, **zoo)
  cfg.tasks.kind, cfg.tasks.kwargs = "class_subsets", {"subsets": ((0, 1, 2, 3, 4),)}
  return cfg


def test_finetune_into_another_head_needs_reinit(parent, tmp_path):
  out = tmp_path / "child"
  with pytest.raises(ParentMismatchError, match=r"params/head/kernel: shape \(16, 2\) in the "
                                                r"parent, \(16, 5\) in the child") as e:
    train_zoo(child_config(parent.dir), str(out), progress=False)
  assert "zoo.reinit=('head',)" in str(e.value) and not out.exists()
  with pytest.raises(ParentMismatchError, match="'haed'.*did you mean 'head'"):
    train_zoo(child_config(parent.dir, reinit=("haed",)), str(out), progress=False)


def test_finetune_with_reinit_keeps_the_body_and_records_it(parent, tmp_path):
  child = train_zoo(child_config(parent.dir, reinit=("head",)), str(tmp_path / "c"),
                    progress=False)
  t = child.table
  assert (t.reinit == "head").all() and (t.relation == "finetune").all()
  start = np.flatnonzero(t.epoch == 0)
  parent_final = np.flatnonzero(parent.table.final)
  np.testing.assert_array_equal(child.stacked("params/fc1/kernel", start),
                                parent.stacked("params/fc1/kernel", parent_final))
  assert child.stacked("params/head/kernel").shape[1:] == (16, 5)
  assert t[t.final].test_acc.min() > 0.3  # 5 classes: chance 0.2
