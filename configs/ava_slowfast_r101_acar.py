"""AVA v2.2, SlowFast R101 8x8 + ACAR head, HR2O depth 1: the reference's SLOWFAST_R101_ACAR_HR2O_DEPTH1.yaml.

The reference R101 config leaves the backbone kwargs at slowfast.py's defaults, which differ from R50's
(docs/reference_configs.md): conv-only lateral fusion with kernel 5, `::alpha` slow frames, 0..255 per-channel
normalisation, depth-1 HR2O with a 1x1 output conv, 5 epochs.
  pretrained/SLOWFAST_R101_K700/  (converted from the reference's pretrained/SLOWFAST_R101_K700.pth.tar)
  python run.py --config=configs/ava_slowfast_r101_acar.py --workdir=runs/ava_r101_acar
Released reference model: 31.69 mAP (31.72 re-evaluated) on AVA v2.2 val, single scale.
"""

import ml_collections

from configs import ava_slowfast_r50_acar


def get_config() -> ml_collections.ConfigDict:
    """R101 ACAR depth 1 on AVA v2.2 with the reference's hyperparameters."""
    config = ava_slowfast_r50_acar.get_config()

    backbone = config.model.backbone
    backbone.layers = (3, 4, 23, 3)   # ref: arch slowfast101
    backbone.alpha = 4                # ref: backbone.kwargs.alpha
    backbone.beta = 0.125             # ref: backbone.kwargs.beta
    backbone.fuse_only_conv = True    # ref: slowfast.py default (not set in the yaml)
    backbone.fuse_kernel_size = 5     # ref: slowfast.py default
    backbone.slow_full_span = False   # ref: slowfast.py default (slow frames ::alpha)

    head = config.model.head
    head.depth = 1                    # ref: head.kwargs.depth
    head.mlp_1x1 = True               # ref: head.kwargs.mlp_1x1

    data = config.data
    data.pixel_scale = 1.0            # ref: ToTensor norm_value 1. (pixels stay 0..255)
    data.mean = (110.63666788, 103.16065604, 96.29023126)  # ref: Normalize mean
    data.std = (38.7568578, 37.88248729, 40.02898126)      # ref: Normalize std

    train = config.train
    train.num_epochs = 5.0            # ref: n_epochs: 5
    train.schedule.milestone_epochs = (4.6, 4.8)  # ref: scheduler.milestone_epochs

    config.checkpoint.init_from = "pretrained/SLOWFAST_R101_K700"  # ref: backbone.pretrain.path (converted)
    config.checkpoint.init_scope = "backbone"
    return config
