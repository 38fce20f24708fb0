"""Linear CKA between every layer of two ResNets: jatlas.similarity vs a NumPy loop.

Two random ResNets (R1111 and R2222, widths 16-128; CKA's cost does not depend on the
weights) read the same n digits. Their tap features are extracted once (one
jitted forward pass per net, `similarity.tap_features`) and both sides get the same
float32 arrays:
  jatlas    `similarity.layer_matrix(fa, fb, metric)`: every (tap of A, tap of B)
            pair in one jitted pass; timed on its first call (compile included)
            and in steady state (median of --repeats further calls). It jits a new
            function on every call, so each call compiles again; "held_jit" times
            the same pass inside one jax.jit the caller keeps (what a cached
            compile would give).
  baseline  what a user writes with NumPy, pair by pair (Kornblith et al. 2019):
            biased: centre the columns, |Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F);
            debiased: Gram matrices K = X X^T, L = Y Y^T and the unbiased HSIC of
            Song et al. (2012) on the diagonal-free Grams.
Cases: 8x8 digits with conv maps flattened (up to 1,024 features a tap, more than
the examples: jatlas takes the Gram form there) and 32x32 digits with maps
mean-pooled (16-128 features a tap), each biased and debiased.

  python benchmarks/cka_speed.py             # n = 1024, a few minutes (compiles)
  python benchmarks/cka_speed.py --smoke     # R1 vs R11, widths 4 and 8, n = 48

Prints one JSON line per case: {"name", "jatlas", "baseline", "ratio", "unit"} with
unit pairs/s (ratio > 1: jatlas is faster), plus the seconds of each side, the
first-call and held-jit ratios, GFLOP/s of each side (matmul FLOPs of the form it
computes, every pair counted as written: XLA may share a tap's self-products
between pairs) and the largest |jatlas - NumPy| over all pairs.
"""
import argparse
import functools
import json
import statistics
import sys
import time

import jax
import numpy as np

from jatlas import data, nets, similarity

WIDTHS = (16, 32, 64, 128)
NETS = (("R1111", WIDTHS), ("R2222", WIDTHS))
SMOKE_NETS = (("R1", (4,)), ("R11", (4, 8)))
CASES = (("digits8_flatten", 8, "flatten"), ("digits32_mean", 32, "mean"))


def digits(size: int, n: int) -> np.ndarray:
  """The first n of all 1,797 digits [n, size, size, 1] (repeated if n is larger)."""
  ds = data.load_digits(size=size)
  x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
  return np.resize(x, (n, *x.shape[1:]))


def random_net(arch: str, widths: tuple, seed: int):
  """(net, variables): a ResNet with kernels drawn N(0, 1 / fan_in) in NumPy at the
  shapes of its init (jax.eval_shape: compiling init takes longer than the whole
  benchmark at smoke size), BatchNorm at identity. XLA's own convolutions, which
  compile faster than the CPU population lowering (the forward is not timed)."""
  net = nets.resnet_from_name(arch, widths=widths, num_classes=10, conv_lowering="xla")
  shapes = jax.eval_shape(net.init, jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  rng = np.random.default_rng(seed)

  def draw(path, s):
    leaf = path[-1].key
    if len(s.shape) > 1:
      return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(s.dtype)
    return np.full(s.shape, 1.0 if leaf in ("scale", "var") else 0.0, s.dtype)
  return net, jax.tree_util.tree_map_with_path(draw, shapes)


def tap_features(net, variables, x, reduce: str) -> dict:
  """{tap: [n, d] NumPy float32} in forward order, one jitted forward pass."""
  feats = jax.jit(lambda v, x: similarity.tap_features(net, v, x, reduce=reduce))(variables, x)
  return {t: np.asarray(feats[t]) for t in net.tap_names()}  # jit returns keys sorted


def numpy_biased_cka(x, y) -> float:
  x, y = x - x.mean(0), y - y.mean(0)
  xy = np.sum((y.T @ x) ** 2)
  return xy / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def numpy_unbiased_hsic(k, l) -> float:
  """Song et al. (2012), eq. 5, times n (n - 3) (it cancels in CKA)."""
  n = len(k)
  k, l = k.copy(), l.copy()
  np.fill_diagonal(k, 0)
  np.fill_diagonal(l, 0)
  ones_k, ones_l = k.sum(0), l.sum(0)
  return (np.vdot(k, l) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
          - 2 / (n - 2) * ones_k @ ones_l)


def numpy_debiased_cka(x, y) -> float:
  x, y = x - x.mean(0), y - y.mean(0)  # the same number, less float32 cancellation
  k, l = x @ x.T, y @ y.T
  return numpy_unbiased_hsic(k, l) / np.sqrt(numpy_unbiased_hsic(k, k)
                                             * numpy_unbiased_hsic(l, l))


def numpy_matrix(fa: dict, fb: dict, debiased: bool) -> np.ndarray:
  metric = numpy_debiased_cka if debiased else numpy_biased_cka
  return np.array([[metric(a, b) for b in fb.values()] for a in fa.values()])


def pair_flops(n: int, d1: int, d2: int, gram: bool) -> int:
  """Matmul FLOPs of one pair: three d x d products, or two n x n Grams and their
  three inner products."""
  if gram:
    return 2 * n * n * (d1 + d2) + 3 * 2 * n * n
  return 2 * n * (d1 * d2 + d1 * d1 + d2 * d2)


def matrix_flops(fa: dict, fb: dict, gram) -> int:
  n = len(next(iter(fa.values())))
  return sum(pair_flops(n, a.shape[1], b.shape[1], gram(n, a.shape[1], b.shape[1]))
             for a in fa.values() for b in fb.values())


def timed(fn, repeats: int) -> tuple[float, float, np.ndarray]:
  """(first call s, median of `repeats` further calls s, result)."""
  t0 = time.perf_counter()
  out = np.asarray(jax.block_until_ready(fn()))
  first, times = time.perf_counter() - t0, []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return first, statistics.median(times), out


def run_case(name: str, fa: dict, fb: dict, debiased: bool, repeats: int) -> dict:
  metric = functools.partial(similarity.linear_cka, debiased=debiased)
  first, steady, ours = timed(lambda: similarity.layer_matrix(fa, fb, metric)[0], repeats)
  # lists in: a dict through jit comes back with its keys sorted, not in tap order
  held = jax.jit(lambda a, b: similarity.layer_matrix(dict(zip(fa, a)), dict(zip(fb, b)),
                                                      metric)[0])
  held_first, held_s, held_out = timed(lambda: held(list(fa.values()), list(fb.values())),
                                       repeats)
  _, base_s, theirs = timed(lambda: numpy_matrix(fa, fb, debiased), repeats)
  pairs = len(fa) * len(fb)
  # linear_cka takes the Gram form where n < d1 + d2; the NumPy debiased loop always does
  flops = matrix_flops(fa, fb, lambda n, d1, d2: n < d1 + d2)
  base_flops = matrix_flops(fa, fb, lambda n, d1, d2: debiased)
  return {"name": name, "jatlas": round(pairs / steady, 1), "baseline": round(pairs / base_s, 1),
          "ratio": round(base_s / steady, 2), "unit": "pairs/s", "pairs": pairs,
          "n": len(next(iter(fa.values()))), "jatlas_s": round(steady, 4),
          "jatlas_first_s": round(first, 3), "baseline_s": round(base_s, 4),
          "first_call_ratio": round(base_s / first, 2),
          "held_jit_s": round(held_s, 4), "held_jit_first_s": round(held_first, 3),
          "held_jit_ratio": round(base_s / held_s, 2),
          "gflops": round(flops / steady / 1e9, 2),
          "held_jit_gflops": round(flops / held_s / 1e9, 2),
          "baseline_gflops": round(base_flops / base_s / 1e9, 2),
          "max_abs_diff": float(max(np.max(np.abs(ours - theirs)),
                                    np.max(np.abs(held_out - theirs))))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=1024, help="examples (digits, repeated past 1,797)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--smoke", action="store_true",
                      help="R1 vs R11, widths 4 and 8, n = 48, 1 repeat")
  args = parser.parse_args(argv)
  n, repeats = (48, 1) if args.smoke else (args.n, args.repeats)
  pair = [random_net(arch, widths, seed)
          for seed, (arch, widths) in enumerate(SMOKE_NETS if args.smoke else NETS)]
  for case, size, reduce in CASES:
    x = digits(size, n)
    fa, fb = (tap_features(net, variables, x, reduce) for net, variables in pair)
    dims = [[f.shape[1] for f in feats.values()] for feats in (fa, fb)]
    print(f"# {case}: n={n}, {len(fa)} x {len(fb)} taps, features per tap {dims}",
          file=sys.stderr)
    for debiased in (False, True):
      name = f"{case}_{'debiased' if debiased else 'biased'}"
      print(json.dumps(run_case(name, fa, fb, debiased, repeats)), flush=True)


if __name__ == "__main__":
  main()
