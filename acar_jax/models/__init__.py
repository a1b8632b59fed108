"""The detector: SlowFast backbone and the heads (Linear, ACAR, ACFB, LFB), built from config.model."""
