"""The encoder interface: every encoder learns a planted signal and stays at chance on
shuffled labels; ProbeX's parameter count and factored LoRA path; save/load; sweep."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jatlas import weights
from jatlas.weights.layer_sweep import layer_sweep
from jatlas.weights.probex import ProbeX

SMALL = {"n_probes": 8, "proj_dim": 8, "rep_dim": 8}
FIT = {"epochs": 60, "eval_every": 10, "patience": None}


def planted_zoo(seed=0, r=360, classes=3):
  """Tensors of r 'models'; the class shifts tensor a (whole) and a block of fc/kernel."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, r)
  t = {"params/a/kernel": rng.normal(size=(r, 6, 8)).astype(np.float32),
       "params/fc/kernel": rng.normal(size=(r, 10, 6)).astype(np.float32),
       "params/fc/bias": rng.normal(size=(r, 6)).astype(np.float32)}
  t["params/a/kernel"] += 0.8 * y[:, None, None]
  t["params/fc/kernel"][:, :4, 0] += 3.0 * y[:, None]
  return t, y


def split(t, y):
  take = lambda s: {k: v[s] for k, v in t.items()}
  return ((take(slice(0, 200)), y[:200]), (take(slice(200, 260)), y[200:260]),
          (take(slice(260, None)), y[260:]))


ENCODERS = [("statnn", {}), ("dense", {"layer": "params/fc/kernel"}),
            ("mlp_flat", {"hidden": (32,)}), ("probex", {"layer": "params/a/kernel", "lr": 3e-3, **SMALL})]


@pytest.mark.parametrize("name,kw", ENCODERS, ids=[e[0] for e in ENCODERS])
def test_encoder_learns_planted_signal_and_not_shuffled_labels(name, kw):
  t, y = planted_zoo()
  (w_tr, y_tr), val, (w_te, y_te) = split(t, y)
  enc = weights.make_encoder(name, **kw, **FIT).fit(w_tr, y_tr, val=val)
  assert enc.score(w_te, y_te) > 0.85
  # labels shuffled over all models: weights say nothing about them
  (w_tr, y_tr), val, (w_te, y_te) = split(t, np.random.default_rng(1).permutation(y))
  chance = weights.make_encoder(name, **kw, **FIT).fit(w_tr, y_tr, val=val)
  assert chance.score(w_te, y_te) < 0.5  # 3 classes: chance 1/3, 100 test models


def test_save_load_same_predictions_and_metrics(tmp_path):
  (w_tr, y_tr), val, (w_te, y_te) = split(*planted_zoo())
  labels = np.array(["zero", "one", "two"])
  enc = weights.make_encoder("probex", layer="params/a/kernel", **SMALL, epochs=10,
                             seeds=(0, 1)).fit(w_tr, labels[y_tr], val=(val[0], labels[val[1]]))
  assert len(enc.record_["val_score"]) == 2 and enc.record_["members"]["seed"] == [0, 1]
  enc.save(str(tmp_path / "enc"))
  back = weights.load_encoder(str(tmp_path / "enc"))
  np.testing.assert_allclose(back.decision_function(w_te), enc.decision_function(w_te),
                             rtol=1e-6)
  assert (back.predict(w_te) == enc.predict(w_te)).all() and set(enc.predict(w_te)) <= set(labels)
  m = back.evaluate(w_te, labels[y_te])
  assert set(m) == {"accuracy", "balanced_accuracy"} and m["accuracy"] == back.score(
      w_te, labels[y_te])
  with pytest.raises(FileNotFoundError, match="encoder.json"):
    weights.load_encoder(str(tmp_path))


def test_diverged_members_are_masked_reported_and_all_diverged_is_an_error():
  (w_tr, y_tr), val, (w_te, y_te) = split(*planted_zoo())
  big = {"epochs": 20, "eval_every": 10, "patience": None, "hidden": (32,)}
  with pytest.warns(RuntimeWarning, match=r"1 of 2 members diverged.*lr 1e\+06"):
    enc = weights.make_encoder("mlp_flat", lr=(0.005, 1e6), **big).fit(w_tr, y_tr, val=val)
  assert enc.record_["members"]["lr"][enc.record_["best_member"]] == 0.005
  assert enc.score(w_te, y_te) > 0.85
  with pytest.raises(RuntimeError, match="every member diverged.*lower the learning rate"):
    weights.make_encoder("mlp_flat", lr=1e6, **big).fit(w_tr, y_tr, val=val)


def test_bad_arguments_are_named():
  with pytest.raises(TypeError, match="n_probe.*did you mean 'n_probes'"):
    weights.make_encoder("probex", n_probe=3)
  with pytest.raises(KeyError, match="did you mean 'probex'"):
    weights.make_encoder("probx")
  t, y = planted_zoo(r=20)
  with pytest.raises(ValueError, match="pass layer="):
    weights.make_encoder("probex").fit(t, y)
  with pytest.raises(ValueError, match="20 models but y has 19"):
    weights.make_encoder("statnn").fit(t, y[:19])


def test_probex_parameter_count_is_the_papers():
  assert weights.probex_param_count(768, 768, 128, 128, 128, 100) == 2_306_788
  shapes = jax.eval_shape(ProbeX(768, 768, n_out=100).init, jax.random.key(0),
                          jnp.zeros((1, 768, 768)))
  assert sum(np.prod(a.shape) for a in jax.tree.leaves(shapes)) == 2_306_788
  p = jax.eval_shape(ProbeX(16, 40, n_out=3, n_probes=5, proj_dim=6, rep_dim=7).init,
                     jax.random.key(0), jnp.zeros((1, 16, 40)))["params"]
  assert p["encoder"]["U"].shape == (40, 5) and p["encoder"]["V"].shape == (16, 6)
  assert p["encoder"]["M"]["kernel"].shape == (30, 7) and p["head"]["kernel"].shape == (7, 3)


def test_lora_factors_equal_the_materialised_layer():
  rng = np.random.default_rng(0)
  b_RHK, a_RKW = rng.normal(size=(4, 12, 3)), rng.normal(size=(4, 3, 20))
  net = ProbeX(12, 20, n_out=5, **SMALL)
  params = net.init(jax.random.key(0), jnp.zeros((1, 12, 20)))
  full = net.apply(params, jnp.asarray(b_RHK @ a_RKW, jnp.float32))
  factored = net.apply(params, {"B": jnp.asarray(b_RHK, jnp.float32),
                                "A": jnp.asarray(a_RKW, jnp.float32)})
  np.testing.assert_allclose(factored, full, rtol=1e-4, atol=1e-5)


def test_layer_sweep_finds_the_planted_layer_as_one_population():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 300)
  t = {f"params/l{i}/kernel": rng.normal(size=(300, 10, 6)).astype(np.float32)
       for i in range(3)}
  t["params/l1/kernel"][:, :3, 0] += 2.0 * y[:, None]
  t["params/other/kernel"] = rng.normal(size=(300, 4, 5)).astype(np.float32)
  take = lambda s: {k: v[s] for k, v in t.items()}
  sweep = layer_sweep(take(slice(0, 200)), y[:200], val=(take(slice(200, 250)), y[200:250]),
                      **SMALL, **FIT, lr=3e-3)
  rows = sweep.table.set_index("layer")
  assert sweep.best_layer == "params/l1/kernel"
  assert rows.population["params/l0/kernel"] == 3 and rows.population["params/other/kernel"] == 1
  assert sweep.best.score(take(slice(250, None)), y[250:]) > 0.8


def test_multilabel_and_regression_metrics():
  y = np.array([[1, 0, 1], [0, 1, 1]])
  logits = np.array([[2.0, -1.0, -0.5], [-1.0, 3.0, 1.0]])
  m = weights.task_metrics("multilabel", y, logits)
  assert m["elementwise_accuracy"] == pytest.approx(5 / 6) and m["exact_match"] == 0.5
  r = weights.task_metrics("regression", [1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.2, 3.9])
  assert r["kendall_tau"] == 1.0 and r["r2"] == pytest.approx(1 - 0.07 / 5)
