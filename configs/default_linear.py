"""The default synthetic job with a Linear head: the control that shows what the ACAR head adds.

Trained and evaluated exactly as `default.py` (same data, schedule, seed); only the head differs, so the
per-group frame-mAP of the two runs (actor-only vs relational classes) isolates the relational reasoning.
  python run.py --config=configs/default_linear.py --workdir=runs/default_linear
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """Tiny SlowFast + Linear head on the synthetic dataset."""
    config = default.get_config()
    config.model.head.type = "linear"
    return config
