"""AVA v2.2, SlowFast R50 8x8 + Linear head: the reference's configs/AVA/SLOWFAST_R50_baseline.yaml.

It differs from `ava_slowfast_r50_acar.py` only in the head (diff of the two reference files).
  python run.py --config=configs/ava_slowfast_r50_linear.py --workdir=runs/ava_r50_linear
"""

import ml_collections

from configs import ava_slowfast_r50_acar


def get_config() -> ml_collections.ConfigDict:
    """R50 Linear baseline on AVA v2.2 with the reference's hyperparameters."""
    config = ava_slowfast_r50_acar.get_config()
    config.model.head.type = "linear"   # ref SLOWFAST_R50_baseline.yaml: head.type linear
    config.model.head.roi_spatial = 7   # ref: head.kwargs.roi_spatial
    config.model.head.dropout = 0.0     # ref: LinearHead default
    return config
