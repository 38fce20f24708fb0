"""End-to-end zoo training: table, weights, divergence, resume, sharding, fine-tuning."""
import json
import os
import types

import chex
import jax
import numpy as np
import pytest

from jatlas.zoo import train as train_module
from jatlas.zoo import train_zoo
from jatlas.zoo.checkpoint import TrainCheckpoints


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
  from tiny_config import make_tiny_config
  cfg = make_tiny_config(members=24, lr=(1e-2, 3e-2), optimizer=("adam", "sgd"),
                         epochs=(1, 2))
  return train_zoo(cfg, str(tmp_path_factory.mktemp("zoo")), progress=False)


def test_table_has_one_row_per_member_and_checkpoint(zoo):
  t = zoo.table
  # members with epochs=1 are saved at epochs 0, 1; members with epochs=2 at 0, 1, 2
  epochs = t.groupby("member")["epoch"].apply(tuple).to_dict()
  for m, e in epochs.items():
    want = (0, 1) if t[t.member == m].epochs.iloc[0] == 1 else (0, 1, 2)
    assert e == want, (m, e)
  assert zoo.num_checkpoints == len(t) == sum(len(v) for v in epochs.values())
  assert zoo.num_members == t.member.nunique() == 24
  assert t["id"].is_unique
  assert set(t.task) == {"pair:0-1", "pair:2-3", "pair:4-5"}
  assert set(t.optimizer) == {"adam", "sgd"}
  assert (t.seed.groupby(t.member).nunique() == 1).all()
  assert t.groupby("member").final.sum().eq(1).all()
  assert (t.status == "ok").all()


def test_members_learn_and_metrics_match_a_fresh_forward_pass(zoo):
  from jatlas import data
  t = zoo.table
  final = t[t.final]
  assert final.test_bacc.min() > 0.75 and final.test_bacc.mean() > 0.9  # chance is 0.5
  assert t[t.epoch == 0].test_bacc.mean() < 0.7
  ds = data.load_digits(size=8)
  labels_TN = data.class_pairs(ds, ((0, 1), (2, 3), (4, 5))).labels["test"]
  model = zoo.model()
  for _, row in final.iterrows():
    logits = model.apply(zoo.variables(row.name), ds.x_test)
    y = labels_TN[row.task_index]
    acc = np.mean(np.argmax(logits, -1)[y >= 0] == y[y >= 0])
    np.testing.assert_allclose(acc, row.test_acc, atol=1e-6)


def test_stacked_params_and_flat_agree(zoo):
  w = zoo.stacked("params/fc1/kernel")
  assert w.shape == (zoo.num_checkpoints, 64, 16)
  rows = [3, 0, 7]
  np.testing.assert_array_equal(zoo.stacked("params/fc1/kernel", rows), w[rows])
  p = zoo.params(7)
  np.testing.assert_array_equal(p["fc1"]["kernel"], w[7])
  flat = zoo.flat(rows)
  n = sum(np.prod(s["shape"]) for k, s in zoo.manifest["tensors"].items()
          if k.startswith("params/"))
  assert flat.shape == (3, n)
  leaves = [np.ravel(zoo.stacked(k, [0])[0]) for k in zoo.names]
  np.testing.assert_array_equal(flat[1], np.concatenate(leaves))


def test_metrics_log_is_written(zoo):
  lines = [json.loads(l) for l in open(os.path.join(zoo.dir, "metrics.jsonl"))]
  assert [l["epoch"] for l in lines] == [0, 1, 2]
  assert lines[-1]["alive"] == 24 and lines[-1]["diverged"] == 0
  assert not os.path.exists(os.path.join(zoo.dir, "train_state"))


def test_refuses_to_overwrite_a_finished_zoo(zoo, tiny_config):
  with pytest.raises(FileExistsError, match="finished zoo"):
    train_zoo(tiny_config(), zoo.dir, progress=False)


def test_diverging_member_is_masked_and_others_go_on(tmp_path, tiny_config):
  # init scale 1e30 overflows the first forward pass: that member's loss is NaN
  cfg = tiny_config(members=6, init_scale=(1.0, 1e30), epochs=(1,), save_epochs=(1,))
  z = train_zoo(cfg, str(tmp_path / "z"), progress=False)
  t = z.table.set_index("member")  # 3 tasks vary fastest: members 3-5 have scale 1e30
  assert list(t.status) == ["ok"] * 3 + ["diverged"] * 3
  assert list(t.diverged_step) == [-1] * 3 + [0] * 3
  healthy = t[t.status == "ok"]
  assert healthy.test_bacc.min() > 0.75
  assert np.isfinite(z.flat()).all()  # diverged members keep their last finite weights
  # the healthy members are exactly what they would be without the diverging ones
  ref = train_zoo(tiny_config(members=3, epochs=(1,), save_epochs=(1,)),
                  str(tmp_path / "ref"), progress=False)
  for m in range(3):
    chex.assert_trees_all_close(z.params(m), ref.params(m), atol=0, rtol=0)


class Killed(Exception):
  """Stands in for a kill right after a training-state checkpoint."""


def interrupt_after_checkpoints(monkeypatch, n: int):
  """Makes the n-th TrainCheckpoints.save raise Killed once it has saved."""
  save, calls = TrainCheckpoints.save, []

  def save_then_die(self, *args, **kw):
    save(self, *args, **kw)
    calls.append(1)
    if len(calls) == n:
      self.close()
      raise Killed

  monkeypatch.setattr(TrainCheckpoints, "save", save_then_die)


def test_kill_and_resume_equals_uninterrupted(tmp_path, tiny_config, monkeypatch):
  cfg = tiny_config(epochs=(3,), save_epochs=(0, 1, 3), steps_per_call=9)
  ref = train_zoo(cfg, str(tmp_path / "ref"), progress=False)
  out = str(tmp_path / "resumed")
  with monkeypatch.context() as m:
    interrupt_after_checkpoints(m, 2)  # at the end of epoch 2 (17 steps each)
    with pytest.raises(Killed):
      train_zoo(cfg, out, progress=False)
  assert not os.path.exists(os.path.join(out, "members.parquet"))
  assert os.path.isdir(os.path.join(out, "train_state"))
  ckpt = TrainCheckpoints(os.path.join(out, "train_state"))
  before_s = ckpt.restore_meta()["train_seconds"]
  ckpt.close()
  with monkeypatch.context() as m:  # a frozen clock: the resumed process adds 0 s
    m.setattr(train_module, "time", types.SimpleNamespace(time=lambda: 5e3))
    z = train_zoo(cfg, out, progress=False)
  assert before_s > 0 and z.manifest["train_seconds"] == round(before_s, 2)
  assert z.num_checkpoints == ref.num_checkpoints
  np.testing.assert_array_equal(z.flat(), ref.flat())
  cols = ["id", "epoch", "step", "test_acc", "val_loss"]
  assert z.table[cols].equals(ref.table[cols])


def test_sharded_over_8_devices_equals_one_device(tmp_path, tiny_config):
  assert len(jax.devices()) == 8
  cfg = tiny_config(members=5, epochs=(1,), save_epochs=(1,))  # 5 members: padded to 8
  one = train_zoo(cfg, str(tmp_path / "one"), progress=False, devices=jax.devices()[:1])
  eight = train_zoo(cfg, str(tmp_path / "eight"), progress=False)
  assert eight.manifest["devices"] == 8 and one.manifest["devices"] == 1
  assert eight.num_checkpoints == one.num_checkpoints == 5
  np.testing.assert_allclose(eight.flat(), one.flat(), rtol=1e-6, atol=1e-6)


def test_finetune_population_records_lineage(zoo, tmp_path, tiny_config):
  cfg = tiny_config(members=4, epochs=(1,), save_epochs=(0, 1), parent=zoo.dir, lr=(1e-3,))
  child = train_zoo(cfg, str(tmp_path / "child"), progress=False)
  t = child.table
  parent_rows = np.flatnonzero(zoo.table.final)
  assert (t.relation == "finetune").all() and (t.parent_zoo == zoo.dir).all()
  assert (t.reinit == "").all()
  for child_row in np.flatnonzero(t.epoch == 0):
    parent_row = parent_rows[t.member[child_row] % len(parent_rows)]
    assert t.parent_id[child_row] == zoo.table.id[parent_row]
    np.testing.assert_array_equal(child.flat([child_row]), zoo.flat([parent_row]))
  assert not np.array_equal(child.flat(np.flatnonzero(t.epoch == 1)),
                            child.flat(np.flatnonzero(t.epoch == 0)))


def test_train_metrics_on_a_subset_match_a_forward_pass_on_it(zoo, tmp_path, tiny_config):
  """zoo.eval_train_examples=n: train_* metrics come from a fixed subset of n training
  examples (its indices drawn from zoo.seed); training, weights and val/test metrics are
  those of the same zoo evaluated on the whole train split."""
  from jatlas import data
  cfg = tiny_config(members=24, lr=(1e-2, 3e-2), optimizer=("adam", "sgd"), epochs=(1, 2),
                    eval_train_examples=50)
  sub = train_zoo(cfg, str(tmp_path / "sub"), progress=False)
  t, full = sub.table, zoo.table
  np.testing.assert_array_equal(sub.stacked("params/fc1/kernel"), zoo.stacked("params/fc1/kernel"))
  for col in ("test_acc", "val_loss", "val_bacc"):
    np.testing.assert_array_equal(t[col], full[col])
  assert not np.allclose(t.train_loss, full.train_loss)
  ds = data.load_digits(size=8)
  idx = np.sort(np.random.default_rng(cfg.zoo.seed).permutation(len(ds.x_train))[:50])
  labels_TN = data.class_pairs(ds, ((0, 1), (2, 3), (4, 5))).labels["train"][:, idx]
  model = sub.model()
  for _, row in t[t.final].iterrows():
    logits = model.apply(sub.variables(row.name), ds.x_train[idx])
    y = labels_TN[row.task_index]
    acc = np.mean(np.argmax(logits, -1)[y >= 0] == y[y >= 0])
    np.testing.assert_allclose(acc, row.train_acc, atol=1e-6)
