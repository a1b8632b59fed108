"""AVA v2.2, SlowFast R50 8x8 + the LFB-style head: the comparison for `ava_slowfast_r50_acfb.py` whose bank holds
the same ACAR run's actor RoI features only (no context, no actor-context maps), read by LFB's feature bank
operator (acar_jax/models/lfb_head.py; docs/acfb.md). Same source run, window and recipe as the ACFB config:

  python run.py --config=configs/ava_slowfast_r50_lfb.py --workdir=runs/ava_slowfast_r50_lfb --mode=extract_bank
  python run.py --config=configs/ava_slowfast_r50_lfb.py --workdir=runs/ava_slowfast_r50_lfb
The actor bank is small (one 1024-float vector per actor per keyframe) and lives next to the ACFB bank, under
runs/ava_slowfast_r50_acar/bank/actors_<split>_s<scale>.
"""

import ml_collections

from configs import ava_slowfast_r50_acfb


def get_config() -> ml_collections.ConfigDict:
    """ava_slowfast_r50_acfb.py with the LFB-style head and an actor-feature bank."""
    config = ava_slowfast_r50_acfb.get_config()
    config.model.head.type = "lfb"
    config.bank.content = "actors"
    return config
