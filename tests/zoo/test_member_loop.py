"""Conv-net zoos on CPU train (and evaluate) members one after another
(Engine(member_loop=True)): the same members and metrics as a vmapped step, on one
device or sharded over eight."""
import jax
import numpy as np
import pytest

from jatlas import data, nets
from jatlas.member_loop import member_map
from jatlas.zoo import sharding
from jatlas.zoo.engine import Engine
from jatlas.zoo.step import MemberHparams, StepConfig, device_data

M, STEPS = 16, 6


@pytest.fixture(scope="module")
def setup():
  ds = data.load_digits(size=8)
  tasks = data.concat_tasks(data.class_pairs(ds, ((0, 1), (3, 8))), data.multiclass(ds))
  model = nets.SmallCNN(channels=(4, 4), num_classes=tasks.num_classes)
  cfg = StepConfig(apply_fn=model.apply, optimizers=("adam", "sgd"), batch_size=8,
                   steps_per_epoch=4, has_batch_stats=False, full_tasks=False)
  keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in range(M)])
  hp = MemberHparams(
      key=keys, task=(np.arange(M) % 3).astype(np.int32),
      lr=np.geomspace(1e-3, 3e-2, M).astype(np.float32), weight_decay=np.zeros(M, np.float32),
      optimizer=(np.arange(M) % 2).astype(np.int32), init_scale=np.ones(M, np.float32),
      total_steps=np.where(np.arange(M) == 5, 3, 100).astype(np.int32))  # member 5 stops early
  return ds, tasks, model, cfg, hp


def _train(setup, devices, member_loop, shared_order=False):
  ds, tasks, model, cfg, hp = setup
  mesh = sharding.population_mesh(devices)
  eng = Engine(cfg, model, ds.x_train[:1], mesh, member_loop=member_loop,
               shared_order=shared_order)
  hp_sharded = sharding.put_members(hp, mesh)
  keys = jax.random.key(1) if shared_order else jax.vmap(
      lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), 1))(hp_sharded.key)
  d = sharding.put_replicated(device_data(ds.x_train, tasks.labels["train"]), mesh)
  states = eng.init(hp_sharded)
  states, loss_a = eng.run(states, hp_sharded, keys, d, 0, STEPS // 2)  # two chunks: the
  states, loss_b = eng.run(states, hp_sharded, keys, d, STEPS // 2, STEPS // 2)  # carry resumes
  x_test = sharding.put_replicated(ds.x_test, mesh)
  y_test = sharding.put_replicated(np.asarray(tasks.labels["test"]), mesh)
  metrics = eng.evaluate(states, hp_sharded, x_test, y_test, tasks.num_classes)
  params = {"params": states.params, "batch_stats": states.batch_stats, "eval": metrics}
  return eng, np.concatenate([loss_a, loss_b]), jax.tree.map(np.asarray, params)


@pytest.mark.parametrize("shared_order", [False, True])
def test_member_loop_equals_vmapped_steps(setup, shared_order):
  _, loss_vmap, params_vmap = _train(setup, jax.devices()[:1], False, shared_order)
  eng, loss_loop, params_loop = _train(setup, jax.devices()[:1], True, shared_order)
  assert eng.member_loop and loss_loop.shape == (STEPS, M)
  np.testing.assert_allclose(loss_loop, loss_vmap, rtol=1e-5, atol=1e-6)
  assert np.isnan(loss_loop[3:, 5]).all()  # frozen after its own 3 steps
  for a, b in zip(jax.tree.leaves(params_loop), jax.tree.leaves(params_vmap)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_member_loop_with_batchnorm_equals_vmapped_steps(setup):
  ds, tasks, _, _, hp = setup
  model = nets.ResNet(stage_blocks=(1, 1), widths=(4, 8), num_classes=tasks.num_classes)
  cfg = StepConfig(apply_fn=model.apply, optimizers=("adam", "sgd"), batch_size=8,
                   steps_per_epoch=4, has_batch_stats=True, full_tasks=False)
  bn_setup = (ds, tasks, model, cfg, hp)
  _, loss_vmap, vars_vmap = _train(bn_setup, jax.devices()[:1], False)
  eng, loss_loop, vars_loop = _train(bn_setup, jax.devices()[:1], True)
  assert eng.member_loop and jax.tree.leaves(vars_loop["batch_stats"])
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
  ds, _, model, cfg, _ = setup
  mesh = sharding.population_mesh(jax.devices()[:1])
  assert Engine(cfg, model, ds.x_train[:1], mesh).member_loop  # CPU + convolutions
  assert not Engine(cfg, nets.MLP(hidden=(8,)), ds.x_train[:1], mesh).member_loop


@pytest.mark.parametrize("devices", [1, 4])
def test_member_map_equals_vmap(devices):
  x = np.arange(24.0, dtype=np.float32).reshape(8, 3)
  tree = {"a": x, "b": x[:, 0]}
  f = lambda t, y: ({"s": t["a"].sum() * y}, t["b"] - y)
  want = jax.vmap(f)(tree, x[:, 1])
  got = jax.jit(lambda t, y: member_map(f, t, y, devices=devices))(tree, x[:, 1])
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b)
