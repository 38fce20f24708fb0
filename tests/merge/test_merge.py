"""Merging functions against NumPy formulas written entry by entry."""
import jax
import numpy as np
import pytest

from jatlas import io, merge


def model(seed, scale=1.0):
  rng = np.random.default_rng(seed)
  return {"params": {"fc": {"kernel": (scale * rng.normal(size=(4, 3))).astype(np.float32),
                            "bias": (scale * rng.normal(size=(3,))).astype(np.float32)}},
          "step": np.int32(seed)}


def leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_average_and_slerp():
  ms = [model(i) for i in range(3)]
  got = leaves(merge.average(ms, weights=[1, 2, 1]))
  for k, v in leaves(ms[0]).items():
    if v.dtype.kind == "f":
      want = (leaves(ms[0])[k] + 2 * leaves(ms[1])[k] + leaves(ms[2])[k]) / 4
      np.testing.assert_allclose(got[k], want, rtol=1e-6)
    else:
      assert got[k] == v  # integer leaves from the first model
  a, b = model(0), model(1)
  for t in (0.0, 0.3, 1.0):
    got = leaves(merge.slerp(a, b, t))["['params']['fc']['kernel']"].astype(np.float64)
    x, y = (leaves(m)["['params']['fc']['kernel']"].astype(np.float64) for m in (a, b))
    om = np.arccos(np.sum(x * y) / np.linalg.norm(x) / np.linalg.norm(y))
    want = (np.sin((1 - t) * om) * x + np.sin(t * om) * y) / np.sin(om)
    np.testing.assert_allclose(got, want, atol=1e-5)
  with pytest.raises(ValueError, match="non-negative"):
    merge.average(ms, weights=[1, -1, 1])


def np_ties(base, fts, density, lam):
  taus = [f - base for f in fts]
  trimmed = []
  for t in taus:
    k = max(1, int(round(density * t.size)))
    thresh = np.sort(np.abs(t).ravel())[-k]
    trimmed.append(np.where(np.abs(t) >= thresh, t, 0.0))
  out = np.zeros_like(base)
  for idx in np.ndindex(base.shape):
    vals = [t[idx] for t in trimmed]
    sign = 1.0 if sum(vals) >= 0 else -1.0
    agree = [v for v in vals if v != 0 and np.sign(v) == sign]
    out[idx] = np.mean(agree) if agree else 0.0
  return base + lam * out


def test_task_arithmetic_and_ties_equal_numpy():
  base, fts = model(0), [model(1, 0.5), model(2, 0.5), model(3, 0.5)]
  ta = leaves(merge.task_arithmetic(base, fts, lam=0.4))
  ties = leaves(merge.ties(base, fts, density=0.4, lam=1.3))
  for k, b in leaves(base).items():
    if b.dtype.kind != "f":
      assert ta[k] == b and ties[k] == b
      continue
    f = [leaves(m)[k] for m in fts]
    np.testing.assert_allclose(ta[k], b + 0.4 * sum(x - b for x in f), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ties[k], np_ties(b, f, 0.4, 1.3), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="density"):
    merge.ties(base, fts, density=0)


def test_dare_drops_with_p_and_rescales_survivors():
  rng = np.random.default_rng(0)
  base = {"w": rng.normal(size=(200, 50)).astype(np.float32)}
  ft = {"w": base["w"] + rng.normal(size=(200, 50)).astype(np.float32)}
  got = np.asarray(merge.dare(base, [ft], p=0.7, key=jax.random.key(0))["w"])
  tau, delta = ft["w"] - base["w"], got - base["w"]
  kept = delta != 0
  assert abs(1 - kept.mean() - 0.7) < 0.02
  np.testing.assert_allclose(delta[kept], tau[kept] / 0.3, rtol=1e-4, atol=1e-5)
  again = np.asarray(merge.dare(base, [ft], p=0.7, key=jax.random.key(0))["w"])
  np.testing.assert_array_equal(got, again)
  np.testing.assert_allclose(merge.dare(base, [ft], p=0.0, key=jax.random.key(1))["w"],
                             ft["w"], rtol=1e-6)


def test_structure_mismatch_lists_every_problem():
  a, b = model(0), model(1)
  b["params"]["fc"]["kernel"] = np.zeros((5, 3), np.float32)
  del b["params"]["fc"]["bias"]
  with pytest.raises(ValueError, match=r"(?s)missing .*bias.*kernel.*shape \(5, 3\)"):
    merge.average([a, b])


def test_merged_file_carries_its_recipe(tmp_path):
  base, fts = model(0), [model(1), model(2)]
  m = merge.ties(base, fts, density=0.5)
  path = str(tmp_path / "m.safetensors")
  merge.save_merged(path, m["params"], method="ties", params={"density": 0.5},
                    parents=["z/m00001@e0005", "z/m00002@e0005"], base="z/m00000@e0005")
  assert merge.read_recipe(path) == {"method": "ties", "params": {"density": 0.5},
                                     "parents": ["z/m00001@e0005", "z/m00002@e0005"],
                                     "base": "z/m00000@e0005"}
  back = io.load_file(path)
  np.testing.assert_array_equal(back["fc/kernel"], np.asarray(m["params"]["fc"]["kernel"]))
  with pytest.raises(ValueError, match=">= 2 parents"):
    merge.save_merged(path, m["params"], method="average", parents=["a"])


@pytest.mark.parametrize("net_name", ["lenet5", "resnet"])
def test_weight_matching_undoes_a_permutation_and_aligns_independent_nets(net_name):
  import jax.numpy as jnp
  from jatlas import nets
  if net_name == "lenet5":
    net, shape = nets.LeNet5(num_classes=3), (1, 32, 32, 1)
  else:
    net, shape = nets.ResNet(stage_blocks=(1, 1), widths=(4, 6), num_classes=3), (1, 8, 8, 3)
  a = net.init(jax.random.key(0), jnp.zeros(shape))
  spec = nets.permutation_spec(net, a)
  b = nets.permute(a, spec, nets.random_permutation(spec, jax.random.key(1), flip=False,
                                                    rescale=False))
  back = nets.permute(b, spec, merge.weight_matching(a, b, spec))
  for k, v in leaves(a).items():
    np.testing.assert_allclose(leaves(back)[k], v, atol=1e-6, err_msg=k)
  # two independent inits: aligned b is closer to a, and computes what b computes
  c = net.init(jax.random.key(2), jnp.zeros(shape))
  c_aligned = nets.permute(c, spec, merge.weight_matching(a, c, spec))
  dot = lambda u, w: sum(float(np.sum(leaves(u)[k] * leaves(w)[k])) for k in leaves(u)
                         if "params" in k)
  assert dot(a, c_aligned) > dot(a, c)
  x = jax.random.normal(jax.random.key(3), (4, *shape[1:]))
  np.testing.assert_allclose(net.apply(c_aligned, x), net.apply(c, x), atol=1e-5)
