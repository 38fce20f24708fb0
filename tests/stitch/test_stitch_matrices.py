"""Stitching matrices over model pairs, with the sanity controls, from one program per
receiver tap; the triangle summary on hand-made matrices."""
import jax
import numpy as np
import pandas as pd
import pytest

from jatlas import data, nets, stitch, zoo
from jatlas.stitch import population

DS = data.load("digits")
NET = nets.MLP(hidden=(32, 16), num_classes=10)


@pytest.fixture(scope="module")
def models():
  """Two MLPs trained on digits from different seeds, as one zoo population."""
  eng = zoo.Engine(zoo.classifier(NET, DS.x_train[:1]), batch_size=64, steps_per_epoch=21)
  members = eng.members(seed=[0, 1], lr=3e-3, total_steps=300)
  states, _ = eng.run(eng.init(members), members,
                      eng.put(zoo.labels_data(DS.x_train, DS.y_train[None])), 0, 300)
  params = jax.tree.map(np.asarray, states.params)
  return {n: (NET, {"params": jax.tree.map(lambda a, i=i: a[i], params)})
          for i, n in enumerate("ab")}


def test_model_pair_matrices_with_controls(models, monkeypatch):
  groups, train_group = [], population._train_group  # one engine population each

  def counted(models, g, *a, **k):
    groups.append(g)
    return train_group(models, g, *a, **k)
  monkeypatch.setattr(population, "_train_group", counted)
  with_c, controls = stitch.with_controls(models, ("a", "b"), DS.x_train, seed=3)
  assert controls == [("a:random", "b"), ("a", "b", "mse")]
  assert set(with_c) == {"a", "b", "a:random"}
  res = stitch.stitch_matrices(with_c, [("a", "b"), ("b", "a"), *controls], DS.x_train,
                               DS.y_train, DS.x_test, DS.y_test, progress=False,
                               seeds=(0, 1), epochs=10, lr=1e-2)
  # receiver taps fc1, fc2 of one net: 4 pairs x 4 cells x 2 seeds in two programs
  assert [len(g.jobs) for g in groups] == [8, 8]
  assert set(res["accuracy"]) == {("a", "b", "task", 1), ("b", "a", "task", 1),
                                  ("a:random", "b", "task", 1), ("a", "b", "mse", 1)}
  own = np.mean(np.argmax(NET.apply(models["b"][1], DS.x_test), -1) == DS.y_test)
  assert res["receiver_acc"]["b"] == pytest.approx(own) and own > 0.9
  t = res["table"]
  assert len(t) == 4 * 4 * 2 and res["skipped"] == {}
  np.testing.assert_allclose(t.gap, t.receiver_acc - t.test_acc)
  ab = res["accuracy"][("a", "b", "task", 1)]
  assert list(ab.index) == ["fc1", "fc2"] and list(ab.columns) == ["fc1", "fc2"]
  cell = t[(t.sender == "a") & (t.target == "task") & (t.send_tap == "fc2") & (t.recv_tap == "fc1")]
  assert ab.loc["fc2", "fc1"] == cell.test_acc.max()
  assert ab.to_numpy().min() > 0.75  # same-architecture MLPs stitch at every cell
  # an untrained sender carries less: its stitches fall short of the trained one's
  rand = res["accuracy"][("a:random", "b", "task", 1)]
  assert rand.to_numpy().mean() < ab.to_numpy().mean() - 0.02
  # the MSE stitch is closer to b's own representation than the task-trained stitch
  task_rel = t[(t.sender == "a") & (t.receiver == "b") & (t.target == "task")].rel_mse.mean()
  mse_rel = t[t.target == "mse"].rel_mse.mean()
  assert mse_rel < 0.5 * task_rel and mse_rel < 0.5


def test_triangle_summary_reads_proportional_depth():
  acc = pd.DataFrame([[0.9, 0.5, 0.3], [0.9, 0.9, 0.4], [0.9, 0.9, 0.9]],
                     index=list("abc"), columns=list("xyz"))
  s = stitch.triangle_summary(acc)
  assert s["last_sender_mean"] == pytest.approx(0.9)
  assert s["first_sender_to_last_receiver"] == pytest.approx(0.3)
  assert s["backward_mean"] == pytest.approx(0.9)  # the 6 cells on or below the diagonal
  assert s["forward_mean"] == pytest.approx((0.5 + 0.3 + 0.4) / 3)
  # 2 sender taps, 4 receiver taps: the sender's last (depth 1) is deeper than all,
  # its first (depth 0) only as deep as the first receiver; NaN cells are left out
  wide = pd.DataFrame([[1.0, 0.2, np.nan, 0.4], [0.8, 0.8, 0.8, 0.8]])
  s = stitch.triangle_summary(wide)
  assert s["backward_mean"] == pytest.approx((1.0 + 4 * 0.8) / 5)
  assert s["forward_mean"] == pytest.approx(0.3)
