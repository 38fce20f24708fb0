"""The linearised template against a NumPy product of the layers; input probing learns
what a net's function says and nothing from shuffled labels; it saves and loads."""
import jax
import jax.numpy as jnp
import numpy as np

from jatlas import nets, weights
from jatlas.flat_names import flatten_variables
from jatlas.weights.linearised import detector_template, linear_map, plot_templates


def stacked_variables(net, x, n, seed=0):
  keys = jax.random.split(jax.random.key(seed), n)
  return jax.vmap(lambda k: net.init(k, x))(keys)


def test_linear_map_is_the_product_of_the_layers():
  net = nets.MLP(hidden=(5, 7), num_classes=3, activation="tanh")
  v_R = stacked_variables(net, jnp.zeros((1, 4, 2)), 3)
  a_RKI = linear_map(net, v_R, (4, 2))
  p = v_R["params"]
  for r in range(3):
    w = p["fc1"]["kernel"][r] @ p["fc2"]["kernel"][r] @ p["head"]["kernel"][r]  # [8, 3]
    np.testing.assert_allclose(a_RKI[r].reshape(3, 8), np.asarray(w).T, rtol=1e-5, atol=1e-6)


def test_lenet_template_is_its_linear_map(tmp_path):
  net = nets.LeNet5(num_classes=2, activation="tanh")
  v_R = stacked_variables(net, jnp.zeros((1, 32, 32, 1)), 2)
  t_RI = detector_template(net, v_R, (32, 32, 1))
  lin = net.clone(activation="identity")
  x = jax.random.normal(jax.random.key(1), (1, 32, 32, 1))
  v0 = jax.tree.map(lambda a: a[0], v_R)
  f = lambda x: lin.apply(v0, x)[0]
  want = (f(x) - f(jnp.zeros_like(x)))[1] - (f(x) - f(jnp.zeros_like(x)))[0]
  np.testing.assert_allclose(jnp.sum(t_RI[0] * x[0]), want, rtol=1e-4)
  plot_templates(t_RI, np.array([0, 1]), ["a", "b"], str(tmp_path / "t.png"))
  assert (tmp_path / "t.png").stat().st_size > 0


def probing_zoo(n=240, seed=0):
  """MLPs whose head bias says the class (0: logit 0 high, 1: logit 1 high, 2: neither)."""
  net = nets.MLP(hidden=(8,), num_classes=2, activation="relu")
  v_R = jax.tree.map(np.asarray, stacked_variables(net, jnp.zeros((1, 3, 3, 1)), n, seed))
  y = np.random.default_rng(seed).integers(0, 3, n)
  bias = np.stack([np.where(y == 0, 3.0, 0.0), np.where(y == 1, 3.0, 0.0)], 1)
  v_R["params"]["head"]["bias"] = bias.astype(np.float32)
  return flatten_variables(v_R), y


def test_input_probing_reads_the_function_and_not_shuffled_labels(tmp_path):
  t, y = probing_zoo()
  take = lambda s: {k: v[s] for k, v in t.items()}
  kw = dict(net_name="mlp", net_kwargs={"hidden": (8,), "num_classes": 2},
            input_shape=(3, 3, 1), n_probes=4, hidden=(16,), epochs=40, lr=3e-3, patience=None)
  enc = weights.make_encoder("input_probing", **kw)
  enc.fit(take(slice(0, 150)), y[:150], val=(take(slice(150, 180)), y[150:180]))
  assert enc.score(take(slice(180, None)), y[180:]) > 0.9
  enc.save(str(tmp_path / "ip"))
  back = weights.load_encoder(str(tmp_path / "ip"))
  np.testing.assert_allclose(back.decision_function(take(slice(180, None))),
                             enc.decision_function(take(slice(180, None))), rtol=1e-5)
  y_shuffled = np.random.default_rng(3).permutation(y)
  chance = weights.make_encoder("input_probing", **kw).fit(
      take(slice(0, 150)), y_shuffled[:150], val=(take(slice(150, 180)), y_shuffled[150:180]))
  assert chance.score(take(slice(180, None)), y_shuffled[180:]) < 0.55  # chance 1/3, 60 models
