"""Keyed random permutations of [0, n) evaluated one index at a time.

A member's epoch order is a bijection chosen by (member seed, epoch). Sorting
random keys costs O(n log n) per member per epoch and dominated training time
for small nets (0.3 s per epoch for 1,024 members x 1,797 examples on CPU).
A swap-or-not shuffle (Hoang, Morris & Rogaway 2012) gives the image of one
index in O(rounds), works on any domain size without cycle walking, and so
has no data-dependent loop: a while loop per step cost the MLP zoo ~20%.
"""
import math

import jax
import jax.numpy as jnp


def _mix(x, k):
  """A cheap uint32 hash (murmur3 finaliser) of x keyed by k."""
  h = x * jnp.uint32(0x9E3779B1) + k
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x85EBCA77)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE3D)
  return h ^ (h >> 16)


def num_rounds(n_max: int) -> int:
  """Rounds for a near-uniform order: 2 log2(n), at least 16 (measured: first-position
  and adjacent-pair statistics match a true shuffle from 16 rounds at n = 1,293)."""
  return 2 * max(8, math.ceil(math.log2(max(n_max, 2))))


def permute(key, i, n, n_max: int | None = None):
  """The image of indices `i` under a keyed permutation of [0, n).

  key: a PRNG key; i: int array of indices in [0, n); n: int (may be traced, then
  give its static upper bound `n_max`, which sets the number of rounds).
  Usage: order_B = permute(jax.random.fold_in(key, epoch), pos_B, n)
  """
  if n_max is None:
    n_max = int(n)
  rounds = num_rounds(n_max)
  keys = jax.random.bits(key, (rounds, 2), jnp.uint32)
  n = jnp.maximum(jnp.asarray(n, jnp.uint32), 1)
  x = jnp.asarray(i, jnp.uint32)
  for r in range(rounds):
    # each round pairs x with (k - x) mod n and swaps the pair on one keyed coin
    # flip, named by the pair's larger element: an involution, hence a bijection
    partner = keys[r, 0] % n + n - x
    partner = jnp.where(partner >= n, partner - n, partner)
    swap = (_mix(jnp.maximum(x, partner), keys[r, 1]) >> 31) == 1
    x = jnp.where(swap, partner, x)
  return x.astype(jnp.int32)
