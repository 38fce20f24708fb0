"""The hypernetwork: generated pytrees have the net's shapes and sane scales; training
through the engine beats random init on a planted case, deterministically; held-out
targets never reach the loss, and the prototype hypernet detects a digit it never saw;
teachers, embeddings and balanced accuracy against NumPy."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jatlas import data, nets
from jatlas.weights import hypernet_eval as he
from jatlas.weights import hypernet_train as ht
from jatlas.weights.hypernet import (HyperNet, PrototypeHyperNet, generate, glorot_std,
                                     init_hypernet, mean_images, param_template,
                                     prototype_features, task_embeddings)
from jatlas.zoo import train_zoo
from jatlas.zoo.schema import default_config

CLASSES = (0, 1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def digits():
  """8x8 digits, one-vs-rest tasks of 6 digits."""
  ds = data.load_digits(size=8)
  return ds, data.one_vs_rest(ds, CLASSES)


def _mlp():
  return nets.MLP(hidden=(16,), num_classes=2, activation="tanh")


def _mlp_logits(params, x_NHWC):
  """NumPy forward of `_mlp()`: the independent reference."""
  h = np.tanh(x_NHWC.reshape(len(x_NHWC), -1) @ params["fc1"]["kernel"] + params["fc1"]["bias"])
  return h @ params["head"]["kernel"] + params["head"]["bias"], h


def _planted(tasks):
  """Teachers that know the labels (easy case)."""
  return 0.05 + 0.9 * tasks.labels["train"].astype(np.float32)


def test_generated_lenet5_has_the_nets_shapes_and_sane_scales():
  net = nets.LeNet5(num_classes=2, activation="tanh")
  x = jnp.asarray(np.random.default_rng(0).random((3, 32, 32, 1)), jnp.float32)
  hyper = HyperNet(param_template(net, x[:1]), hidden=16, code=8)
  hp = jax.jit(lambda k: init_hypernet(hyper, k, cond_dim=4, noise_dim=2))(jax.random.key(0))
  gen = jax.jit(lambda hp, c, z: generate(hyper, hp, c, z))
  detector = gen(hp, jax.nn.one_hot(1, 4), jnp.zeros(2))
  want = jax.eval_shape(net.init, jax.random.key(0), x)["params"]
  chex.assert_trees_all_equal_shapes_and_dtypes(detector, want)
  logits = jax.jit(lambda p: net.apply({"params": p}, x))(detector)
  chex.assert_shape(logits, (3, 2))
  chex.assert_tree_all_finite(logits)
  for name in ("conv1", "conv3", "fc1"):
    w = detector[name]["kernel"]
    assert 0.6 < float(jnp.std(w)) / glorot_std(w.shape) < 1.6, name
  assert 0 < float(jnp.abs(detector["head"]["bias"]).max()) < 0.5
  batched = gen(hp, jnp.eye(4)[:2], jnp.zeros((2, 2)))
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], batched), detector, atol=1e-6)


def test_template_is_generic_and_norm_scales_start_at_one():
  net = nets.build("resnet", arch="R1111", widths=(4, 4, 8, 8), num_classes=3)
  x = jnp.zeros((1, 8, 8, 3))
  template = param_template(net, x)
  offsets = {name: offset for name, _, offset, _ in template}
  ones = {n for n, o in offsets.items() if o == 1.0}
  assert ones and ones == {n for n in offsets if n.endswith("scale")}
  hyper = HyperNet(template, hidden=8, code=4)
  out = jax.eval_shape(lambda k: generate(hyper, init_hypernet(hyper, k, 2), jnp.ones(2)),
                       jax.random.key(1))
  chex.assert_trees_all_equal_shapes_and_dtypes(
      out, jax.eval_shape(net.init, jax.random.key(0), x)["params"])


def test_prototype_head_is_a_nearest_prototype_rule(digits):
  ds, tasks = digits
  net = _mlp()
  hyper = PrototypeHyperNet(param_template(net, ds.x_train[:1]), prototype_features(net),
                            (8, 8, 1), code=4)
  cond_TC = mean_images(ds.x_train, tasks.labels["train"])
  hp = jax.jit(lambda k: init_hypernet(hyper, k, cond_TC.shape[1]))(jax.random.key(0))
  hp["reference"] = 0.1 * jnp.arange(16.0) / 16  # a reference r != 0
  gen = jax.jit(lambda c: generate(hyper, hp, c))
  batched, single = jax.device_get(gen(cond_TC)), jax.device_get(gen(cond_TC[2]))
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[2], batched), single, atol=1e-6)
  chex.assert_trees_all_equal_shapes(single, jax.eval_shape(net.init, jax.random.key(0),
                                                            ds.x_train[:1])["params"])
  chex.assert_trees_all_equal(jax.tree.map(lambda a: a[0], batched)["fc1"], single["fc1"])
  # margin(x) = alpha (2 f(x) - f(p) - r).(f(p) - r) + beta, f = the body's tanh features
  x = ds.x_test[:5]
  logits, f_x = _mlp_logits(single, x)
  _, f_p = _mlp_logits(single, cond_TC[2].reshape(1, 8, 8, 1))
  r = np.asarray(hp["reference"])
  want = float(hp["alpha"]) * (2 * f_x - f_p - r) @ (f_p[0] - r) + float(hp["beta"])
  np.testing.assert_allclose(logits[:, 1] - logits[:, 0], want, rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_named():
  x = jnp.zeros((1, 8, 8, 1))
  hyper = HyperNet(param_template(_mlp(), x))
  hp = jax.eval_shape(lambda k: init_hypernet(hyper, k, 3), jax.random.key(0))
  with pytest.raises(ValueError, match=r"cond must be \[C\] or \[T, C\]"):
    jax.eval_shape(lambda c: generate(hyper, hp, c), jnp.zeros((1, 2, 3)))
  with pytest.raises(ValueError, match="labels_TN shape"):
    task_embeddings(np.zeros((4, 8, 8, 1)), np.zeros((2, 5)))
  with pytest.raises(ValueError, match="no positive"):
    mean_images(np.zeros((4, 8, 8, 1)), np.array([[1, 0, 0, 0], [0, 0, 0, 0]]))
  with pytest.raises(ValueError, match=r"q_TN \(2, 5\)"):
    ht.train_hypernet(_mlp(), np.zeros((4, 8, 8, 1)), np.zeros((2, 5)), np.eye(2))
  three = nets.MLP(hidden=(4,), num_classes=3)
  proto = PrototypeHyperNet(param_template(three, x), prototype_features(three), (8, 8, 1))
  with pytest.raises(ValueError, match="2-class head/kernel"):
    jax.eval_shape(lambda k: init_hypernet(proto, k, 64), jax.random.key(0))
  proto = PrototypeHyperNet(param_template(_mlp(), x), prototype_features(_mlp()), (8, 8, 1))
  with pytest.raises(ValueError, match=r"flattened \(8, 8, 1\) image"):
    jax.eval_shape(lambda k: init_hypernet(proto, k, 63), jax.random.key(0))


def test_task_embeddings_and_mean_images_match_numpy(digits):
  ds, tasks = digits
  x = ds.x_train.astype(np.float64)
  pos = ds.y_train == CLASSES[1]
  np.testing.assert_allclose(mean_images(ds.x_train, tasks.labels["train"])[1],
                             x[pos].mean(0).ravel(), rtol=1e-5)
  e_TE = task_embeddings(ds.x_train, tasks.labels["train"], pool=2)
  d = (x[pos].mean(0) - x.mean(0))[..., 0]                  # [8, 8]
  want = d.reshape(4, 2, 4, 2).mean((1, 3)).ravel()
  np.testing.assert_allclose(e_TE[1], want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(e_TE, axis=1), 1.0, rtol=1e-6)


def test_detector_bacc_matches_numpy(digits):
  ds, tasks = digits
  net = _mlp()
  params_R = he.random_params(net, ds.x_test[:1], np.arange(4))
  task_R = np.array([0, 1, 5, 1])
  got = he.detector_bacc(net, params_R, task_R, ds.x_test, tasks.labels["test"], chunk=100)
  for r, t in enumerate(task_R):
    logits, _ = _mlp_logits(jax.tree.map(lambda a: a[r], params_R), ds.x_test)
    pred, y = np.argmax(logits, -1), tasks.labels["test"][t]
    want = 0.5 * ((pred[y == 1] == 1).mean() + (pred[y == 0] == 0).mean())
    assert abs(got[r] - want) < 1e-6


@pytest.fixture(scope="module")
def trained(digits):
  """Seeds 0, 1, 0: members 0 and 2 train on different devices from one seed."""
  ds, tasks = digits
  return ht.train_hypernet(_mlp(), ds.x_train, _planted(tasks), np.eye(len(CLASSES)),
                           seeds=(0, 1, 0), steps=40, batch_size=32, lr=3e-3, hidden=16,
                           code=8, steps_per_call=20, progress=False)


def test_training_beats_random_init(digits, trained):
  ds, tasks = digits
  assert trained.alive_M.all()
  chex.assert_shape(trained.loss_SM, (40, 3))
  assert trained.loss_SM[-5:].mean() < 0.5 * trained.loss_SM[:2].mean()
  res = he.evaluate_hypernet(_mlp(), trained, ds.x_test, tasks.labels["test"],
                             zoo_bacc_T=np.linspace(0.9, 0.8, 6), random_per_task=2)
  chex.assert_shape(res["generated_MT"], (3, 6))
  assert res["generated_MT"].mean() > 0.85 and res["generated_MT"].min() > 0.7
  assert res["random_T"].mean() < 0.65
  np.testing.assert_array_equal(res["zoo_T"], np.linspace(0.9, 0.8, 6))


def test_training_is_deterministic_given_seeds(trained):
  chex.assert_trees_all_equal(trained.member_params(0), trained.member_params(2))
  np.testing.assert_array_equal(trained.loss_SM[:, 0], trained.loss_SM[:, 2])
  diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), trained.member_params(0),
                      trained.member_params(1))
  assert max(jax.tree.leaves(diff)) > 1e-3


def test_held_out_targets_never_reach_the_loss(digits, trained):
  ds, tasks = digits
  t = len(CLASSES)
  pop = ht.hypernet_population(_mlp(), trained.hyper, t)
  params, state = {"hyper": trained.member_params(0)}, {}
  frozen = {"cond_TC": jnp.eye(t), "train_T": jnp.arange(t) != 2, "prior_T": jnp.full(t, 0.2)}
  q_NT = jnp.asarray(_planted(tasks)[:, :32].T)
  batch = {"x": ds.x_train[:32], "y": {"q": q_NT, "label": jnp.zeros((32, t), jnp.int32)}}
  scrambled = {**batch, "y": {**batch["y"], "q": q_NT.at[:, 2].set(1 - q_NT[:, 2])}}
  loss_grad = jax.jit(jax.value_and_grad(
      lambda p, b: pop.loss({**frozen, **p}, state, b, None)[0]))
  (l1, g1), (l2, g2) = loss_grad(params, batch), loss_grad(params, scrambled)
  assert float(l1) == float(l2)
  chex.assert_trees_all_equal(g1, g2)
  (l3, _) = loss_grad(params, {**batch, "y": {**batch["y"], "q": q_NT.at[:, 1].set(0.5)}})
  assert float(l3) != float(l1)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
  """One-vs-rest MLP zoo on 8x8 digits: one member per task."""
  c = default_config()
  c.data.kwargs = {"size": 8}
  c.tasks.kind, c.tasks.kwargs = "one_vs_rest", {"classes": CLASSES}
  c.model.kwargs = {"hidden": (16,), "activation": "tanh"}
  c.zoo.update({"members": len(CLASSES), "lr": (1e-2,), "epochs": (2,), "batch_size": 32,
                "save_epochs": (2,)})
  return train_zoo(c, str(tmp_path_factory.mktemp("zoo")), progress=False)


def test_zoo_teachers_and_bacc(tiny_zoo, digits):
  ds, _ = digits
  x = ds.x_train[:50]
  q_TN = ht.zoo_teacher_probs(tiny_zoo, x, per_task=1)
  t = tiny_zoo.table
  assert tiny_zoo.model().activation == "tanh" and list(tiny_zoo.model().hidden) == [16]
  for task in range(len(CLASSES)):
    row = int(np.flatnonzero(t.final & (t.status == "ok") & (t.task_index == task))[0])
    logits, _ = _mlp_logits(tiny_zoo.params(row), x)
    want = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    np.testing.assert_allclose(q_TN[task], want, rtol=1e-5, atol=1e-6)
  final = t[t.final & (t.status == "ok")]
  np.testing.assert_allclose(he.zoo_test_bacc(tiny_zoo),
                             final.groupby("task_index").test_bacc.mean().to_numpy())


def test_prototype_hypernet_detects_a_held_out_digit(tiny_zoo, digits):
  ds, tasks = digits
  trained, res = he.hypernet_on_zoo(tiny_zoo, ds, tasks, cond="prototype", held_out=(3,),
                                    teachers_per_task=1, random_per_task=2, seeds=(0,),
                                    steps=60, batch_size=32, lr=3e-3, code=8, progress=False)
  np.testing.assert_array_equal(trained.train_T, np.arange(6) != 3)
  assert res["generated_T"][3] > 0.75 > res["random_T"][3]
  assert res["generated_T"].mean() > res["zoo_T"].mean() - 0.1
  with pytest.raises(ValueError, match="one-hot code of a held-out task"):
    he.hypernet_on_zoo(tiny_zoo, ds, tasks, cond="onehot", held_out=(3,))
