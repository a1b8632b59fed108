"""AVA-Kinetics v1.0, SlowFast R152 8x8 + ACAR head: the paper's best single ACAR backbone.

The R101 AVA-Kinetics config with the R152 depths. The paper's R152 (Kinetics-700, 63.4 top-1) is the authors'
own pre-training, like their R101: we assume the same backbone settings and 0..255 per-channel normalisation
as the reference's R101 and its depth-1 HR2O head (the report does not list them separately).
Paper (AVA-Kinetics v1.0 val): 35.12 mAP single scale (test 34.99), 35.96 with 3 scales + flip.
  python run.py --config=configs/avakinetics_slowfast_r152_acar.py --workdir=runs/avak_r152_acar
Evaluates on AVA-Kinetics v1.0 val (AVA val >= 0.7 + Kinetics val >= 0.65), as `avakinetics_slowfast_r101_acar.py`
explains; the reference released no R152 model (the zoo's 33.70 is the R101 on AVA val).
"""

import ml_collections

from configs import avakinetics_slowfast_r101_acar


def get_config() -> ml_collections.ConfigDict:
    """R152 8x8 ACAR on AVA-Kinetics with the paper's 55k-step schedule."""
    config = avakinetics_slowfast_r101_acar.get_config()
    config.model.backbone.layers = (3, 8, 36, 3)   # ref: models/backbones/slowfast.py slowfast152
    config.checkpoint.init_from = "pretrained/SLOWFAST_R152_K700"  # paper: Kinetics-700 pre-training
    return config
