"""Minibatch CKA (Nguyen, Raghu & Kornblith 2021): layer x layer CKA over a dataset too
big for one Gram matrix, from unbiased HSICs summed over batches of examples.

  CKA_ab = sum_i HSIC_1(K_ai, L_bi) / sqrt(sum_i HSIC_1(K_ai, K_ai) sum_i HSIC_1(L_bi, L_bi))

over batches i (linear kernels, U-centred). One batch gives every layer pair at
once: the U-centred Grams of all layers are stacked as [L, n^2] rows G and G_a G_b^T
is added up. Each batch's HSICs are divided by n(n-3), so batches of different
sizes are weighted correctly (the reference accumulator omits it, which silently
reweights a ragged last batch).

Usage:
  acc = None
  for x_batch in batches:
    acc = accumulate(acc, feats_a(x_batch), feats_b(x_batch))   # lists of [n, d_l]
  cka_LL = minibatch_cka(acc)                                    # [L_a, L_b]
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from jatlas.similarity.cka import center_gram, gram_linear


def _grams(feats: Sequence) -> jax.Array:
  """[L, n*n] U-centred linear Grams (features at their own scale: a per-batch
  normalisation would weight the batches differently)."""
  rows = []
  for f in feats:
    f = jnp.asarray(f, jnp.float32).reshape(len(f), -1)
    rows.append(center_gram(gram_linear(f), unbiased=True).reshape(-1))
  return jnp.stack(rows)


@jax.jit
def batch_hsic(feats_a: Sequence, feats_b: Sequence) -> dict:
  """Unbiased HSICs of one batch: {"ab": [L_a, L_b], "aa": [L_a], "bb": [L_b]}."""
  n = len(feats_a[0])
  if n < 4 or any(len(f) != n for f in [*feats_a, *feats_b]):
    raise ValueError(f"every feature of a batch needs the same n >= 4 examples; got "
                     f"{[len(f) for f in feats_a]} and {[len(f) for f in feats_b]}")
  ga, gb = _grams(feats_a), _grams(feats_b)
  scale = 1.0 / (n * (n - 3))
  return {"ab": ga @ gb.T * scale, "aa": jnp.sum(ga ** 2, 1) * scale,
          "bb": jnp.sum(gb ** 2, 1) * scale}


def accumulate(acc: dict | None, feats_a: Sequence, feats_b: Sequence | None = None) -> dict:
  """acc + this batch's HSICs (feats_b default: feats_a, one model's layers)."""
  h = batch_hsic(list(feats_a), list(feats_a if feats_b is None else feats_b))
  return h if acc is None else jax.tree.map(jnp.add, acc, h)


def minibatch_cka(acc: dict) -> jax.Array:
  """[L_a, L_b] CKA from accumulated HSICs (NaN where a self-HSIC is <= 0)."""
  aa, bb = acc["aa"][:, None], acc["bb"][None, :]
  ok = (aa > 0) & (bb > 0)
  return jnp.where(ok, acc["ab"] / jnp.sqrt(jnp.where(ok, aa * bb, 1.0)), jnp.nan)
