"""Keyed random permutations of [0, n) evaluated one index at a time.

A member's epoch order is a bijection chosen by (member seed, epoch). Sorting
random keys costs O(n log n) per member per epoch and dominated training time
for small nets (0.3 s per epoch for 1,024 members x 1,797 examples on CPU); a
Feistel network with cycle walking gives the same thing in O(batch) per step.
"""
import jax
import jax.numpy as jnp

ROUNDS = 4


def _mix(x, k):
  """A cheap uint32 hash (murmur3 finaliser) of x keyed by k."""
  h = x * jnp.uint32(0x9E3779B1) + k
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x85EBCA77)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE3D)
  return h ^ (h >> 16)


def _encrypt(x, round_keys, half):
  mask = (jnp.uint32(1) << half) - 1
  left, right = x >> half, x & mask
  for r in range(ROUNDS):
    left, right = right, left ^ (_mix(right, round_keys[r]) & mask)
  return (left << half) | right


def permute(key, i, n):
  """The image of indices `i` under a keyed permutation of [0, n).

  key: a PRNG key; i: int array of indices in [0, n); n: int (may be traced).
  Usage: order_B = permute(jax.random.fold_in(key, epoch), pos_B, n)
  """
  round_keys = jax.random.bits(key, (ROUNDS,), jnp.uint32)
  n = jnp.asarray(n, jnp.uint32)
  bits = jnp.maximum(32 - jax.lax.clz(jnp.maximum(n, 2) - 1), 2)
  half = (bits + 1) // 2  # domain 2**(2*half) < 4n: cycle walking ends quickly
  y = _encrypt(jnp.asarray(i, jnp.uint32), round_keys, half)
  y = jax.lax.while_loop(lambda y: jnp.any(y >= n),
                         lambda y: jnp.where(y >= n, _encrypt(y, round_keys, half), y), y)
  return y.astype(jnp.int32)
