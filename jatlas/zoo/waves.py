"""Waves: a population bigger than memory trains as consecutive sub-populations.

Each wave is a full population program over all devices; every member's
randomness comes from its own seed, so a member trains the same in any wave (up to
the summation order of a different batch of members). Peak memory is set by the
wave size, not by the member count.

  state_bytes      bytes of one member's training state (params, optimizer state,
                   non-trained state), from `jax.eval_shape` of the engine's init
  free_bytes       memory free for the population: on GPU/TPU the first device's
                   limit less what is in use, on CPU the host's MemAvailable
  choose_wave_size the members that fit in FRACTION of the free memory at
                   COPIES x state_bytes each (the run's device state, its host copy
                   at a save, the checkpoint's and the shard's buffers), a multiple
                   of the device count, at most the population
  wave_slices      [start, stop) member ranges of consecutive waves

Usage:
  size, why = choose_wave_size(members, state_bytes(eng), eng.mesh.devices.size)
  for start, stop in wave_slices(members, size, eng.mesh.devices.size): ...
"""
import os

import jax
import numpy as np

COPIES = 4
FRACTION = {"cpu": 0.25, "gpu": 0.5, "tpu": 0.5}


def state_bytes(eng, start=None) -> int:
  """Bytes of one member's MemberState (params, optimizer state, state)."""
  member = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
                        eng.members(seed=np.zeros(1, np.int64)))
  shapes = jax.eval_shape(eng.init_member, member, start)
  return int(sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(shapes)))


def _host_available() -> int:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_bytes(device=None) -> tuple[int, str]:
  """(free bytes, where: "host" or the device kind)."""
  device = device or jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), device.device_kind
  return _host_available(), "host"


def choose_wave_size(members: int, per_member: int, devices: int, *,
                     free: tuple[int, str] | None = None) -> tuple[int, str]:
  """(wave size, a line saying how it was chosen) (module docstring)."""
  free_b, where = free or free_bytes()
  platform = jax.devices()[0].platform
  budget = FRACTION.get(platform, 0.25) * free_b
  fit = int(budget // max(1, COPIES * per_member))
  size = max(devices, fit // devices * devices)
  size = min(size, -(-members // devices) * devices)
  slices = wave_slices(members, size, devices)
  used = max(b - a for a, b in slices)  # the waves are evened out below the size that fits
  why = (f"{len(slices)} wave{'s' * (len(slices) > 1)} of up to {used} of {members} members; "
         f"up to {size} fit in {FRACTION.get(platform, 0.25):.0%} of {free_b / 2**30:.1f} GiB "
         f"free ({where}) at {COPIES} x {per_member / 2**20:.2f} MiB of training state per "
         "member")
  return size, why


def wave_slices(members: int, wave_size: int, devices: int = 1) -> list[tuple[int, int]]:
  """Consecutive [start, stop) ranges of at most wave_size members, as even as the
  device count allows (4,000 members at 1,100: four waves of 1,000, not 3 x 1,100 + 700)."""
  if wave_size < 1 or devices < 1:
    raise ValueError(f"wave_size={wave_size}, devices={devices}: both must be >= 1")
  waves = -(-members // wave_size)
  size = -(-members // waves)
  rounded = -(-size // devices) * devices
  size = rounded if rounded <= wave_size else size
  return [(s, min(s + size, members)) for s in range(0, members, size)]
