"""Stitch layers, direct matching and stitches trained between frozen nets."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jatlas import data, nets, stitch

DS = data.load("digits")


@pytest.fixture(scope="module")
def trained_mlps():
  """Two MLPs trained from different seeds on digits, and an untrained one."""
  net = nets.MLP(hidden=(32, 16), num_classes=10)
  x, y = jnp.asarray(DS.x_train), jnp.asarray(DS.y_train)

  def train(seed):
    v = net.init(jax.random.key(seed), x[:1])
    opt = optax.adam(3e-3)
    state = opt.init(v)

    @jax.jit
    def step(v, state, idx):
      g = jax.grad(lambda v: optax.softmax_cross_entropy_with_integer_labels(
          net.apply(v, x[idx]), y[idx]).mean())(v)
      up, state = opt.update(g, state)
      return optax.apply_updates(v, up), state
    for i in range(300):
      idx = jax.random.randint(jax.random.key(1000 * seed + i), (64,), 0, len(x))
      v, state = step(v, state, idx)
    return v
  return net, train(0), train(1), net.init(jax.random.key(9), x[:1])


def accuracy(logits):
  return float(np.mean(np.argmax(np.asarray(logits), -1) == DS.y_test))


@pytest.mark.parametrize("shape_in,shape_out,kind", [
    ((8, 8, 4), (8, 8, 6), "conv"), ((8, 8, 4), (4, 4, 6), "down"),
    ((4, 4, 4), (8, 8, 6), "up"), ((8, 8, 4), (10,), "dense"), ((12,), (10,), "dense")])
def test_adapters_make_the_receivers_shape(shape_in, shape_out, kind):
  assert stitch.adapter(shape_in, shape_out)[0] == kind
  h = jnp.ones((3, *shape_in))
  s = stitch.Stitch(out_shape=shape_out, kernel=3 if kind == "conv" else 1, norm=True)
  out = s.apply(s.init(jax.random.key(0), h), h)
  assert out.shape == (3, *shape_out)


def test_bad_shapes_are_refused():
  with pytest.raises(ValueError, match="whole factor"):
    stitch.adapter((6, 6, 4), (4, 4, 4))
  with pytest.raises(ValueError, match="only feature maps"):
    stitch.adapter((12,), (4, 4, 4))


def test_direct_match_of_a_model_with_itself_is_the_identity(trained_mlps):
  net, va, _, _ = trained_mlps
  h = net.apply(va, DS.x_train, stop="fc1")
  p = stitch.direct_match(h, h)
  live = np.asarray(h).std(0) > 0  # a ReLU unit that never fires has no row to fit
  assert 20 < live.sum() < 32
  np.testing.assert_allclose(p["dense"]["kernel"][np.ix_(live, live)], np.eye(live.sum()),
                             atol=1e-3)
  logits = stitch.stitched_logits(net, va, net, va, "fc1", "fc1", p, DS.x_test)
  want = np.asarray(net.apply(va, DS.x_test))
  # exact where test inputs leave those units silent too, as on the training inputs
  assert np.median(np.abs(np.asarray(logits) - want)) < 1e-3
  assert np.mean(np.argmax(logits, -1) == np.argmax(want, -1)) > 0.99


def test_trained_stitch_connects_two_models_and_controls_fall_short(trained_mlps):
  net, va, vb, v_rand = trained_mlps
  base = accuracy(net.apply(vb, DS.x_test))
  kw = dict(x_test=DS.x_test, y_test=DS.y_test, seeds=(0, 1), epochs=30, lr=3e-3)
  task = stitch.train_stitches(net, va, net, vb, "fc1", "fc1", DS.x_train, DS.y_train, **kw)
  assert task["test_acc_M"].shape == (2,) and task["test_acc_M"].min() > base - 0.04
  assert set(task["params"]) == {"dense"} and task["params"]["dense"]["kernel"].shape == (2, 32, 32)
  direct = stitch.train_stitches(net, va, net, vb, "fc1", "fc1", DS.x_train, DS.y_train,
                                 init="direct", **{**kw, "epochs": 1, "lr": 1e-4})
  assert direct["test_acc_M"].min() > base - 0.02  # least squares alone nearly suffices
  # sender never trained: its features carry less, so the stitched model does worse
  rand = stitch.train_stitches(net, v_rand, net, vb, "fc1", "fc1", DS.x_train, DS.y_train, **kw)
  assert rand["test_acc_M"].max() < task["test_acc_M"].min()
  mse = stitch.train_stitches(net, va, net, vb, "fc1", "fc1", DS.x_train, DS.y_train,
                              target="mse", **kw)
  assert np.isfinite(mse["final_loss_M"]).all() and mse["test_acc_M"].max() <= 1.0


def test_conv_stitch_on_lenet_taps_trains_on_the_engine():
  net = nets.LeNet5(num_classes=10, activation="tanh")
  ds = data.load("digits", size=32)
  x, y = ds.x_train[:128], ds.y_train[:128]
  va, vb = net.init(jax.random.key(0), x[:1]), net.init(jax.random.key(1), x[:1])
  h = net.apply(va, x, stop="conv2")
  p = stitch.direct_match(h, h)  # a model into itself: the identity 1x1 conv
  assert p["conv"]["kernel"].shape == (1, 1, 16, 16)
  np.testing.assert_allclose(stitch.stitched_logits(net, va, net, va, "conv2", "conv2", p, x),
                             net.apply(va, x), atol=1e-3)
  # conv1 (32x32x6) into b's pool1 (16x16x6): a stride-2 conv stitch
  res = stitch.train_stitches(net, va, net, vb, "conv1", "pool1", x, y, x_test=x, y_test=y,
                              epochs=2, seeds=(0, 1, 2))
  assert res["params"]["conv"]["kernel"].shape == (3, 2, 2, 6, 6)
  assert res["test_acc_M"].shape == (3,) and np.isfinite(res["final_loss_M"]).all()
  with pytest.raises(ValueError, match=r"\(16, 16, 6\) to \(12, 12, 16\).*whole factor"):
    stitch.train_stitches(net, va, net, vb, "pool1", "conv2", x, y, epochs=1)


def test_stitch_matrix_fills_joinable_pairs_and_names_the_rest(trained_mlps, tmp_path):
  net, va, vb, _ = trained_mlps
  res = stitch.stitch_matrix(net, va, net, vb, DS.x_train, DS.y_train, DS.x_test, DS.y_test,
                             send_taps=("fc1", "fc2"), recv_taps=("fc1", "fc2"),
                             progress=False, epochs=10, lr=1e-2)
  acc = res["accuracy"]
  assert list(acc.index) == ["fc1", "fc2"] and not acc.isna().any().any()
  assert acc.loc["fc2", "fc2"] > 0.5 and res["skipped"] == {}
  stitch.plot_stitch_matrix(acc, str(tmp_path / "m.png"), "a -> b")
  assert (tmp_path / "m.png").stat().st_size > 1000
  lenet = nets.LeNet5(num_classes=10)
  ds = data.load("digits", size=32)
  v = lenet.init(jax.random.key(0), ds.x_train[:1])
  res = stitch.stitch_matrix(lenet, v, lenet, v, ds.x_train[:64], ds.y_train[:64],
                             ds.x_test[:32], ds.y_test[:32], send_taps=("fc1",),
                             recv_taps=("pool1", "fc1"), progress=False, epochs=1)
  assert np.isnan(res["accuracy"].loc["fc1", "pool1"]) and "only feature maps" in res[
      "skipped"][("fc1", "pool1")]
  assert not np.isnan(res["accuracy"].loc["fc1", "fc1"])
