"""The population axis over devices and hosts (`jax.sharding`, SPMD).

The same program runs on one CPU, a GPU box, or many hosts after
`jax.distributed.initialize()`: member-indexed arrays are split over a 1-D
mesh axis "pop"; the data are replicated.
"""
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "pop"  # the population's mesh axis (member_map takes any 1-D mesh's axis)


def one_cpu_device_per_core() -> None:
  """Exposes one JAX CPU device per core, so a population trains one member per core
  (LeNet-5 zoo on 2 cores: 1.9x one 2-thread device). Call before any JAX computation;
  keeps JAX_NUM_CPU_DEVICES if the user set it, and does nothing once backends are up.
  Usage: sharding.one_cpu_device_per_core()  # first thing in an entry point"""
  if "JAX_NUM_CPU_DEVICES" in os.environ:
    return
  try:
    jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
  except RuntimeError:  # a backend is already initialised: its device count stays
    pass


def population_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def padded_size(members: int, mesh: Mesh) -> int:
  """Smallest multiple of the device count that holds `members`."""
  n = mesh.devices.size
  return -(-members // n) * n


def member_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put_members(tree, mesh: Mesh):
  """Host NumPy pytree with leading member axis -> global array sharded on 'pop'."""
  sharding = member_sharding(mesh)
  return jax.tree.map(
      lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: a[i]), tree)


def put_replicated(tree, mesh: Mesh):
  sharding = replicated(mesh)
  return jax.tree.map(
      lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: a[i]), tree)


def to_host(tree):
  """Gathers a (possibly multi-host) sharded pytree into NumPy on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)
