"""Array operations written in JAX."""
