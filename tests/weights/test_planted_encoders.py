"""The spec encoders (canonical, equivariant) learn a class planted in a zoo of
permuted MLPs, stay at chance on shuffled labels, and predict the same after
save/load.

The zoo: random MLP(hidden=(12, 7)) weights; class c in {0, 1} scales fc1's kernel
and bias by 2 ** (c - 1); then every model's hidden units are relabelled at random
(nets.permute, no flips or scales: the function is unchanged, the flat weights are
not). The scale is a relu rescaling, which canonicalise(rescale=False) keeps.
200 models train, 50 pick the epoch, 200 test: on shuffled labels a test accuracy
of 0.6 or more has a chance of 0.3%.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jatlas import nets, weights
from jatlas.flat_names import flatten_variables

NET, SHAPE = nets.MLP(hidden=(12, 7), num_classes=3), (1, 4, 4, 1)
MODELS, TRAIN, VAL = 450, 200, 50
# the fit's time is its compiles: more epochs cost little, fewer would not save much
ENCODERS = {
    "canonical": dict(base="statnn", epochs=30, eval_every=10, patience=None),
    "equivariant": dict(hidden=16, edge_hidden=8, head_hidden=(16,), lr=3e-3, epochs=30,
                        eval_every=10, patience=None),
}


def permuted_zoo(seed: int):
  """(spec, {name: [MODELS, ...]}, classes [MODELS]) of the module docstring."""
  shapes = jax.eval_shape(NET.init, jax.random.key(0), jnp.zeros(SHAPE))
  spec = nets.permutation_spec(NET, shapes)
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.arange(MODELS) % 2)
  models = []
  for c in y:
    flat = {k: (0.3 * rng.standard_normal(s.shape)).astype(np.float32)
            for k, s in flatten_variables(shapes).items()}
    for k in ("params/fc1/kernel", "params/fc1/bias"):
      flat[k] *= np.float32(2.0 ** (c - 1))
    perms = {g: rng.permutation(grp.size) for g, grp in spec.groups.items()}
    models.append(flatten_variables(nets.permute(flat, spec, perms)))
  return spec, {k: np.stack([m[k] for m in models]) for k in models[0]}, y


def split(t, y):
  take = lambda s: ({k: v[s] for k, v in t.items()}, y[s])
  return take(slice(0, TRAIN)), take(slice(TRAIN, TRAIN + VAL)), take(slice(TRAIN + VAL, None))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_spec_encoder_learns_planted_scale_not_shuffled_labels_and_round_trips(name, tmp_path):
  spec, t, y = permuted_zoo(seed=0)
  (w_tr, y_tr), val, (w_te, y_te) = split(t, y)
  enc = weights.make_encoder(name, spec=spec, **ENCODERS[name]).fit(w_tr, y_tr, val=val)
  assert enc.score(w_te, y_te) > 0.85
  enc.save(str(tmp_path / "enc"))
  back = weights.load_encoder(str(tmp_path / "enc"))
  np.testing.assert_allclose(back.decision_function(w_te), enc.decision_function(w_te),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(back.predict(w_te), enc.predict(w_te))
  (w_tr, y_tr), val, (w_te, y_te) = split(t, np.random.default_rng(1).permutation(y))
  chance = weights.make_encoder(name, spec=spec, **ENCODERS[name]).fit(w_tr, y_tr, val=val)
  assert chance.score(w_te, y_te) < 0.6  # 2 classes, 200 test models
