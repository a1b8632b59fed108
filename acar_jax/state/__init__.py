"""The train state, its orbax checkpoints, and the one restore of a trained model."""
