"""A map over the leading member axis that runs as a loop and keeps the axis sharded.

On CPU, running a population's members one after another keeps each member's
working set (patch buffers, activations, optimizer state) in cache, where a
vmap over all members streams it through DRAM. Used by the CPU convolution's
vmap rules (`jatlas.nets.cpu.im2col`) and by `jatlas.zoo.engine` for conv-net zoos.
The mesh axis is the caller's (`jatlas.zoo.sharding.AXIS`): `member_map` shards
over the mesh's only axis, whatever its name.

Usage:
  out = member_map(f, *args)  # == jax.vmap(f)(*args); args: pytrees, leading axis m
"""
import math

import jax
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P


def loop_devices(m: int, devices: int | None = None) -> int:
  """How many devices `member_map` spreads m members over (one loop per device)."""
  return math.gcd(m, jax.device_count() if devices is None else devices)


def member_map(f, *args, devices: int | None = None, mesh: Mesh | None = None,
               shared: tuple = ()):
  """jax.vmap(f, in_axes=(0,)*len(args) + (None,)*len(shared))(*args, *shared)
  computed as a loop over members.

  With a `mesh` (1-D, the population's), each device loops over its own members
  (`shard_map`), and `f` is never vmapped: the CPU convolution kernels are opaque
  calls that XLA cannot partition. Without one, over d = `loop_devices` devices
  the member axis is split as [d, m/d] and each loop step vmaps `f` over one
  member per device: a population sharded over the devices keeps its sharding,
  where a loop over the sharded axis itself would make the SPMD partitioner
  gather every member onto every device."""
  m = jax.tree.leaves(args)[0].shape[0]
  k = len(args)
  loop = lambda *a: lax.map(lambda member: f(*member, *a[k:]), a[:k])
  if mesh is not None and mesh.devices.size > 1 and m % mesh.devices.size == 0:
    spec = P(mesh.axis_names[0])  # shared arguments go in replicated, not closed over:
    # a closed-over global array clashes with shard_map's manual axes across processes
    specs = (spec,) * k + (P(),) * len(shared)
    # check_vma=False: `f` is written for one member, not for manual axes (its scans
    # start from unvarying zeros); every output is per member, so nothing is summed
    return jax.shard_map(loop, mesh=mesh, in_specs=specs, out_specs=spec,
                         check_vma=False)(*args, *shared)
  d = loop_devices(m, devices)
  if d == 1:
    return loop(*args, *shared)
  vf = jax.vmap(f, in_axes=(0,) * k + (None,) * len(shared))
  if m == d:
    return vf(*args, *shared)
  split = jax.tree.map(lambda a: a.reshape(d, m // d, *a.shape[1:]).swapaxes(0, 1), args)
  out = lax.map(lambda a: vf(*a, *shared), split)
  return jax.tree.map(lambda o: o.swapaxes(0, 1).reshape(m, *o.shape[2:]), out)
