"""A vmapped population of N equals N separate single-member runs (the engine's public
per-member functions), with per-member tasks, optimizers, lrs and training lengths."""
import jax
import jax.numpy as jnp
import numpy as np

from jatlas import data, nets
from jatlas.zoo import Engine, classifier, labels_data, sharding


def test_population_equals_separate_runs():
  ds = data.load_digits(size=8)
  tasks = data.concat_tasks(data.class_pairs(ds, ((0, 1), (3, 8))), data.multiclass(ds))
  model = nets.MLP(hidden=(16,), num_classes=tasks.num_classes)
  m, steps = 5, 30
  pop = classifier(model, ds.x_train[:1], optimizers=("adam", "sgd", "rmsprop"))
  eng = Engine(pop, batch_size=16, steps_per_epoch=12,
               mesh=sharding.population_mesh(jax.devices()[:1]))
  members = eng.members(
      seed=np.arange(m), task=[0, 1, 2, 0, 2], lr=[1e-2, 3e-3, 1e-2, 5e-2, 1e-3],
      weight_decay=[0, 1e-4, 0, 1e-3, 0], optimizer=["adam", "sgd", "rmsprop", "sgd", "adam"],
      init_scale=[1, 0.5, 1, 2, 1], total_steps=[30, 30, 20, 30, 7])  # two stop early
  d = eng.put(labels_data(ds.x_train, tasks.labels["train"]))
  states, loss_SM = eng.run(eng.init(members), members, d, 0, steps)
  assert not eng.member_loop(states.params)  # an MLP: one vmapped step

  train_one = jax.jit(eng.train_member, static_argnums=(4,))
  for i in range(m):
    member = jax.tree.map(lambda a: a[i], members)
    state, loss_S = train_one(eng.init_member(member), member, d, jnp.int32(0), steps)
    np.testing.assert_allclose(np.asarray(loss_SM)[:, i], loss_S, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[i], states.params)),
                    jax.tree.leaves(state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # members past their own training length are frozen and report NaN loss
  loss_SM = np.asarray(loss_SM)
  assert np.isnan(loss_SM[7:, 4]).all() and np.isfinite(loss_SM[:7, 4]).all()
