"""A zoo trained in waves of members: the same zoo as one population, resumable mid-wave,
divergence masked per member, the format unchanged; checkpoints without duplicate params."""
import json
import os

import jax
import numpy as np
import pytest

from jatlas.zoo import Zoo, train_zoo, waves
from jatlas.zoo.checkpoint import TrainCheckpoints
from test_train_zoo import Killed, interrupt_after_checkpoints

COLS = ["id", "member", "epoch", "step", "status", "test_acc", "val_loss"]


def cfg_of(tiny_config, **kw):
  base = {"members": 7, "epochs": (2,), "save_epochs": (0, 1, 2), "steps_per_call": 9,
          "init_scale": (1.0, 1e30)}  # 3 tasks vary fastest: members 3-5 diverge
  return tiny_config(**{**base, **kw})


@pytest.fixture(scope="module")
def one(tmp_path_factory):
  from tiny_config import make_tiny_config
  cfg = cfg_of(make_tiny_config, wave_size=16)  # one wave of everything
  return train_zoo(cfg, str(tmp_path_factory.mktemp("one") / "z"), progress=False)


def test_waves_equal_one_population_and_open_like_any_zoo(one, tmp_path, tiny_config):
  z = train_zoo(cfg_of(tiny_config, wave_size=3), str(tmp_path / "w"), progress=False)
  assert one.manifest["waves"] == [[0, 7]] and z.manifest["waves"] == [[0, 3], [3, 6], [6, 7]]
  assert sorted(os.listdir(one.dir)).count("params-e0001.safetensors") == 1
  assert "params-e0001-w0002.safetensors" in os.listdir(z.dir)
  z = Zoo.open(z.dir, verify=True)  # headers and checksums of every wave's shard
  assert z.table[COLS[:5]].equals(one.table[COLS[:5]])
  # the same members: the per-member math does not depend on the wave's other members
  # (vmapped matmuls over another member count may sum in another order: float tolerance)
  np.testing.assert_allclose(z.flat(), one.flat(), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(z.table.test_acc, one.table.test_acc, atol=1e-6)
  # wave 1 (members 3-5) diverged; waves 0 and 2 trained on, and the diverged members
  # keep their last finite weights
  t = z.table[z.table.final].set_index("member")
  assert list(t.status) == ["ok"] * 3 + ["diverged"] * 3 + ["ok"]
  assert t.test_bacc[[0, 1, 2, 6]].min() > 0.75
  assert np.isfinite(z.flat()).all()
  lines = [json.loads(line) for line in open(os.path.join(z.dir, "metrics.jsonl"))]
  assert [(l["wave"], l["epoch"]) for l in lines] == [(w, e) for w in range(3) for e in range(3)]


@pytest.mark.parametrize("n", [4, 5])  # in wave 1 after epoch 1; at the end of wave 1
def test_resume_mid_wave_equals_uninterrupted(tmp_path, tiny_config, monkeypatch, n):
  cfg = cfg_of(tiny_config, wave_size=3)
  ref = train_zoo(cfg, str(tmp_path / "ref"), progress=False)
  out = str(tmp_path / "cut")
  with monkeypatch.context() as m:
    interrupt_after_checkpoints(m, n)  # checkpoints: w0 e1, w0 end, w1 e1, w1 end, ...
    with pytest.raises(Killed):
      train_zoo(cfg, out, progress=False)
  assert json.load(open(os.path.join(out, "run.json")))["waves"] == [[0, 3], [3, 6], [6, 7]]
  z = train_zoo(cfg, out, progress=False)
  np.testing.assert_array_equal(z.flat(), ref.flat())
  assert z.table[COLS].equals(ref.table[COLS])
  lines = open(os.path.join(out, "metrics.jsonl")).read()
  assert lines == open(os.path.join(ref.dir, "metrics.jsonl")).read()


def test_auto_waves_resume_with_the_waves_they_started_with(tmp_path, tiny_config,
                                                           monkeypatch, capsys):
  """zoo.wave_size=0 chooses by the free memory of the time; a resume (with more memory
  free now) keeps the run's waves and says so."""
  cfg, out = cfg_of(tiny_config, wave_size=0), str(tmp_path / "cut")
  with monkeypatch.context() as m:
    m.setattr(waves, "choose_wave_size", lambda *a, **kw: (3, "3 at a time"))
    interrupt_after_checkpoints(m, 2)
    with pytest.raises(Killed):
      train_zoo(cfg, out, progress=False)
  monkeypatch.setattr(waves, "choose_wave_size", lambda *a, **kw: (16, "all at once"))
  capsys.readouterr()
  z = train_zoo(cfg, out, progress=False)
  assert "resuming with the run's own waves (3 of up to 3 members)" in capsys.readouterr().out
  assert z.manifest["waves"] == [[0, 3], [3, 6], [6, 7]]


def test_checkpoint_at_a_save_epoch_leaves_params_to_the_shard(tmp_path, tiny_config,
                                                               monkeypatch):
  cfg = cfg_of(tiny_config, wave_size=16, epochs=(3,), save_epochs=(0, 1, 3))
  seen = []
  save = TrainCheckpoints.save

  def spy(self, step, tree, meta):
    seen.append((meta["step"], sorted(tree), meta["params_from"]))
    save(self, step, tree, meta)
  monkeypatch.setattr(TrainCheckpoints, "save", spy)
  z = train_zoo(cfg, str(tmp_path / "z"), progress=False)
  spe = z.manifest["steps_per_epoch"]
  state_keys = ["alive", "diverged_step", "loss_ref", "opt_state"]
  # epoch 1 is saved to a shard: no params in the checkpoint; epoch 2 is not: params kept;
  # epoch 3 ends the run: no checkpoint at all
  assert seen == [(spe, state_keys, "params-e0001.safetensors"),
                  (2 * spe, sorted(state_keys + ["params", "state"]), None)]
  shards = sum(os.path.getsize(os.path.join(z.dir, s["file"])) for s in z.manifest["shards"])
  assert shards < z.manifest["bytes_written"] < 3 * shards


def test_wave_size_from_free_memory(tiny_config):
  gib = 2 ** 30
  size, why = waves.choose_wave_size(10_000, 2 ** 20, 2, free=(16 * gib, "host"))
  assert size == int(0.25 * 16 * gib // (waves.COPIES * 2 ** 20)) // 2 * 2 == 1024
  assert "10 waves of up to 1000 of 10000" in why and "up to 1024 fit" in why
  assert "16.0 GiB" in why
  assert waves.choose_wave_size(5, 2 ** 20, 2, free=(16 * gib, "host"))[0] == 6  # padded
  assert waves.choose_wave_size(9, 10 * gib, 2, free=(gib, "host"))[0] == 2  # >= devices
  assert waves.wave_slices(4000, 1100, 2) == [(i, i + 1000) for i in range(0, 4000, 1000)]
  with pytest.raises(ValueError, match="wave_size=0"):
    waves.wave_slices(4, 0)
  from jatlas.zoo.train import plan
  run = plan(tiny_config(members=5), "/nonexistent")
  assert run.waves == [(0, 5)] and "of training state per member" in run.wave_note
  assert waves.state_bytes(run.eng) > 0
  assert jax.devices()  # plan wrote nothing
  assert not os.path.exists("/nonexistent")
