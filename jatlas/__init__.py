"""jatlas: learning on neural-network weights and charting model atlases, in JAX/Flax."""

__version__ = "0.1.0"
