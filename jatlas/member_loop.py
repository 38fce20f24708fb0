"""A map over the leading member axis that runs as a loop and keeps the axis sharded.

On CPU, running a population's members one after another keeps each member's
working set (patch buffers, activations, optimizer state) in cache, where a
vmap over all members streams it through DRAM. Used by the CPU convolution's
vmap rules (`jatlas.nets.conv`) and by `jatlas.zoo.engine` for conv-net zoos.

Usage:
  out = member_map(f, *args)  # == jax.vmap(f)(*args); args: pytrees, leading axis m
"""
import math

import jax
from jax import lax


def member_map(f, *args, devices: int | None = None):
  """jax.vmap(f)(*args) computed as a loop over members.

  With d > 1 devices (default: all) the member axis is split as [d, m/d] and
  each loop step takes one member per device: a population sharded over the
  devices keeps its sharding, where a loop over the sharded axis itself would
  make the SPMD partitioner gather every member onto every device."""
  m = jax.tree.leaves(args)[0].shape[0]
  d = math.gcd(m, jax.device_count() if devices is None else devices)
  if m == d:
    return jax.vmap(f)(*args)
  if d == 1:
    return lax.map(lambda a: f(*a), args)
  split = jax.tree.map(lambda a: a.reshape(d, m // d, *a.shape[1:]).swapaxes(0, 1), args)
  out = lax.map(lambda a: jax.vmap(f)(*a), split)
  return jax.tree.map(lambda o: o.swapaxes(0, 1).reshape(m, *o.shape[2:]), out)
