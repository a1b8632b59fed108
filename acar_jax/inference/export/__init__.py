"""Serving artifacts: a jax.export StableHLO file and a TF SavedModel of the prediction function."""
