"""A vmapped population of N equals N separate single-model runs."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jatlas import data, nets
from jatlas.zoo import sharding
from jatlas.zoo.engine import Engine
from jatlas.zoo.step import (MemberHparams, StepConfig, device_data, member_batch, member_key,
                             member_step)


def test_population_equals_separate_runs():
  ds = data.load_digits(size=8)
  tasks = data.concat_tasks(data.class_pairs(ds, ((0, 1), (3, 8))), data.multiclass(ds))
  model = nets.MLP(hidden=(16,), num_classes=tasks.num_classes)
  kinds = ("adam", "sgd", "rmsprop")
  m, steps, batch = 5, 30, 16
  cfg = StepConfig(apply_fn=model.apply, optimizers=kinds, batch_size=batch,
                   steps_per_epoch=12, has_batch_stats=False, full_tasks=False)
  keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in range(m)])
  hp = MemberHparams(
      key=keys, task=np.array([0, 1, 2, 0, 2], np.int32),
      lr=np.array([1e-2, 3e-3, 1e-2, 5e-2, 1e-3], np.float32),
      weight_decay=np.array([0, 1e-4, 0, 1e-3, 0], np.float32),
      optimizer=np.array([0, 1, 2, 1, 0], np.int32),
      init_scale=np.array([1, 0.5, 1, 2, 1], np.float32),
      total_steps=np.array([30, 30, 20, 30, 7], np.int32))  # two stop early
  mesh = sharding.population_mesh(jax.devices()[:1])
  eng = Engine(cfg, model, ds.x_train[:1], mesh)
  d = device_data(ds.x_train, tasks.labels["train"])
  order_keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), 1))(keys)
  states, loss_SM = eng.run(eng.init(hp), hp, order_keys, d, 0, steps)

  step_one = jax.jit(functools.partial(member_step, cfg))
  for i in range(m):
    hp_i = jax.tree.map(lambda a: a[i], hp)
    state = eng._init_member(hp_i)  # the same init, un-vmapped
    losses = []
    for s in range(steps):
      idx_B = member_batch(cfg, hp_i, member_key(hp_i, 1), d, jnp.int32(s))
      state, loss = step_one(state, hp_i, idx_B, d, jnp.int32(s))
      losses.append(loss)
    np.testing.assert_allclose(np.asarray(loss_SM)[:, i], np.asarray(losses), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[i], states.params)),
                    jax.tree.leaves(state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # members past their own training length are frozen and report NaN loss
  assert np.isnan(np.asarray(loss_SM)[7:, 4]).all() and np.isfinite(np.asarray(loss_SM)[:7, 4]).all()
