"""Array operations written in JAX."""

from acar_jax.ops.roi import roi_align

__all__ = ["roi_align"]
