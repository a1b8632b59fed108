"""The LFB-style variant of configs/default_acfb.py: the bank holds the ACAR model's actor RoI features only (no
context, no actor-context maps), and the head relates each actor's feature to the bank's actor features
(acar_jax/models/lfb_head.py). Run as a stage of the default_acfb chain (its `bank.chain_variants`), or alone on a
finished chain's ACAR run and banks:

  python run.py --config=configs/default_lfb.py --workdir=runs/default_acfb/default_lfb \
      --config.bank.source_workdir=runs/default_acfb/acar --config.checkpoint.init_from=runs/default_acfb/acar
"""

import ml_collections

from configs import default_acfb


def get_config() -> ml_collections.ConfigDict:
    """default_acfb.py's ACFB stage with the LFB-style head and an actor-feature bank; not a chain of its own."""
    return default_acfb.lfb_stage()
