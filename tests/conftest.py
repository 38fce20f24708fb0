"""Test-session setup: hermetic Hub, 8 fake CPU devices, strict numerics.

Environment variables must be set before jax / huggingface_hub are imported.
"""
import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
if "HF_HUB_CACHE" not in os.environ:  # an empty cache: nothing can come from outside
  os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="jatlas-hf-cache-")
  atexit.register(shutil.rmtree, os.environ["HF_HUB_CACHE"], True)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["JAX_NUM_CPU_DEVICES"] = "8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

# fits of the same shapes in different tests compile once (jatlas.compile_cache)
from jatlas.compile_cache import use_compile_cache  # noqa: E402

_CACHE = tempfile.mkdtemp(prefix="jatlas-jax-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
use_compile_cache(_CACHE)
