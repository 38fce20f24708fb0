"""Conv-net zoos on CPU train (and evaluate) members one after another
(Engine(member_loop=True)): the same members and metrics as a vmapped step, on one
device or sharded over eight."""
import jax
import numpy as np
import pytest

from jatlas import data, nets
from jatlas.nets.cpu.member_loop import member_map
from jatlas.zoo import Engine, classification_metrics, classifier, labels_data, sharding

M, STEPS = 16, 6


@pytest.fixture(scope="module")
def setup():
  ds = data.load_digits(size=8)
  tasks = data.concat_tasks(data.class_pairs(ds, ((0, 1), (3, 8))), data.multiclass(ds))
  model = nets.SmallCNN(channels=(4, 4), num_classes=tasks.num_classes)
  hp = dict(seed=np.arange(M), task=np.arange(M) % 3, lr=np.geomspace(1e-3, 3e-2, M),
            optimizer=np.where(np.arange(M) % 2, "sgd", "adam"),
            total_steps=np.where(np.arange(M) == 5, 3, 100))  # member 5 stops early
  return ds, tasks, model, hp


def _train(setup, devices, member_loop, shared_order=False):
  ds, tasks, model, hp = setup
  pop = classifier(model, ds.x_train[:1], optimizers=("adam", "sgd"))
  eng = Engine(pop, batch_size=8, steps_per_epoch=4, mesh=sharding.population_mesh(devices),
               member_loop=member_loop, shared_order=shared_order, order_seed=1)
  members = eng.members(**hp)
  d = eng.put(labels_data(ds.x_train, tasks.labels["train"]))
  states = eng.init(members)
  states, loss_a = eng.run(states, members, d, 0, STEPS // 2)  # two chunks: the
  states, loss_b = eng.run(states, members, d, STEPS // 2, STEPS // 2)  # carry resumes
  sums = eng.evaluate(states, members, eng.put(labels_data(ds.x_test, tasks.labels["test"])))
  params = {"params": states.params, "state": states.state,
            "eval": classification_metrics(sums)}
  return eng, np.concatenate([loss_a, loss_b]), jax.tree.map(np.asarray, params)


@pytest.mark.parametrize("shared_order", [False, True])
def test_member_loop_equals_vmapped_steps(setup, shared_order):
  _, loss_vmap, params_vmap = _train(setup, jax.devices()[:1], False, shared_order)
  eng, loss_loop, params_loop = _train(setup, jax.devices()[:1], True, shared_order)
  assert eng.member_loop(params_loop["params"]) and loss_loop.shape == (STEPS, M)
  np.testing.assert_allclose(loss_loop, loss_vmap, rtol=1e-5, atol=1e-6)
  assert np.isnan(loss_loop[3:, 5]).all()  # frozen after its own 3 steps
  for a, b in zip(jax.tree.leaves(params_loop), jax.tree.leaves(params_vmap)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_member_loop_with_batchnorm_equals_vmapped_steps(setup):
  ds, tasks, _, hp = setup
  model = nets.ResNet(stage_blocks=(1, 1), widths=(4, 8), num_classes=tasks.num_classes)
  bn_setup = (ds, tasks, model, hp)
  _, loss_vmap, vars_vmap = _train(bn_setup, jax.devices()[:1], False)
  eng, loss_loop, vars_loop = _train(bn_setup, jax.devices()[:1], True)
  assert jax.tree.leaves(vars_loop["state"]["batch_stats"])
  np.testing.assert_allclose(loss_loop, loss_vmap, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(vars_loop), jax.tree.leaves(vars_vmap)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_member_loop_sharded_over_8_devices_equals_one(setup):
  assert len(jax.devices()) == 8
  _, loss_one, params_one = _train(setup, jax.devices()[:1], True)
  _, loss_eight, params_eight = _train(setup, jax.devices(), True)
  np.testing.assert_allclose(loss_eight, loss_one, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(params_eight), jax.tree.leaves(params_one)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_default_loops_conv_nets_and_vmaps_mlps(setup):
  ds, _, model, _ = setup
  mesh = sharding.population_mesh(jax.devices()[:1])
  for net, loops in ((model, True), (nets.MLP(hidden=(8,)), False)):  # CPU + convolutions
    eng = Engine(classifier(net, ds.x_train[:1]), batch_size=8, steps_per_epoch=4, mesh=mesh)
    assert eng.member_loop(eng.init(eng.members(seed=[0])).params) == loops


@pytest.mark.parametrize("devices", [1, 4])
def test_member_map_equals_vmap(devices):
  x = np.arange(24.0, dtype=np.float32).reshape(8, 3)
  tree = {"a": x, "b": x[:, 0]}
  f = lambda t, y: ({"s": t["a"].sum() * y}, t["b"] - y)
  want = jax.vmap(f)(tree, x[:, 1])
  got = jax.jit(lambda t, y: member_map(f, t, y, devices=devices))(tree, x[:, 1])
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b)
