"""JAX's persistent compilation cache, switched on for entry points and tests.

Encoders fit one after another (per tree, per layer, per learning-curve size)
build fresh jitted closures; programs with the same shapes lower to the same
HLO, and the persistent cache compiles each of them once per directory.

Usage:
  use_compile_cache(os.path.join(out, "jax_cache"))   # before the first jit
"""
import os

import jax


def use_compile_cache(directory: str) -> None:
  """Caches every compiled program in `directory` (unless a cache is already set)."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
