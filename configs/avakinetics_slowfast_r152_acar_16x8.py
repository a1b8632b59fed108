"""AVA-Kinetics v1.0, SlowFast R152 16x8 + ACAR head (Kinetics-700 pre-training 66.1 top-1, paper).

64 frames in at stride 2 with alpha 4, as `avakinetics_slowfast_r101_acar_16x8.py` explains.
  python run.py --config=configs/avakinetics_slowfast_r152_acar_16x8.py --workdir=runs/avak_r152_acar_16x8
Evaluates on AVA-Kinetics v1.0 val (AVA val >= 0.7 + Kinetics val >= 0.65), as `avakinetics_slowfast_r101_acar.py`
explains; the reference released no R152 model.
"""

import ml_collections

from configs import avakinetics_slowfast_r152_acar


def get_config() -> ml_collections.ConfigDict:
    """R152 16x8 ACAR on AVA-Kinetics."""
    config = avakinetics_slowfast_r152_acar.get_config()
    config.data.num_frames = 64           # 4T with T = 16
    config.data.frame_stride = 2          # tau / alpha = 8 / 4
    config.data.tfds_dir = "tfds_clips_64x2"  # packed shards are per sampling (data.source = "tfds")
    config.model.backbone.alpha = 4       # slow pathway: 16 frames
    config.checkpoint.init_from = "pretrained/SLOWFAST_R152_16x8_K700"
    return config
