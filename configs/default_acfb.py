"""The ACFB chain on the synthetic long-term task, in one command (CPU, minutes):

  python run.py --config=configs/default_acfb.py --workdir=runs/default_acfb

trains the tiny ACAR model of configs/default_longterm.py (<workdir>/acar), extracts its feature banks (the
first-order maps for ACFB and the actor features for the LFB-style variant, <workdir>/acar/bank), trains the
ACFB head (<workdir>) and the LFB-style head (configs/default_lfb.py, <workdir>/default_lfb) from the ACAR
checkpoint, and evaluates each; re-running the command skips finished stages and resumes an interrupted one
(acar_jax/training/chain.py). The long-term classes ("red / marker in another second within +-R s") are
independent of the clip, so ACAR is at chance on them; the bank window (+-R s) holds their evidence.
`--mode=eval` on the same command line evaluates the ACFB checkpoint with the chain's val bank.
"""

import ml_collections

from configs import default_longterm


def get_config() -> ml_collections.ConfigDict:
    """The chain: the ACFB stage below, with the LFB-style head (default_lfb.py) as a variant stage."""
    config = acfb_stage()
    config.bank.chain = True
    config.bank.chain_variants = ml_collections.ConfigDict({"default_lfb": lfb_stage()})
    return config


def lfb_stage() -> ml_collections.ConfigDict:
    """The ACFB stage with the LFB-style head and an actor-feature bank (configs/default_lfb.py)."""
    config = acfb_stage()
    config.model.head.type = "lfb"
    config.bank.content = "actors"
    return config


def acfb_stage() -> ml_collections.ConfigDict:
    """ACFB head (2 bank relation blocks) on the ACAR model of default_longterm.py, trained from its checkpoint."""
    config = default_longterm.get_config()
    head = config.model.head
    head.type = "acfb"
    head.depth = 2                    # paper: two stacked blocks
    head.downsample = "none"          # paper: no spatial max pool before the bank relation blocks

    bank = config.bank
    bank.source_config = default_longterm.get_config()   # the ACAR run the bank comes from
    bank.content = "maps"
    bank.window_radius = config.synthetic.longterm_radius   # the labels' window is the bank's window
    bank.whole_video = False
    bank.max_entries = (2 * config.synthetic.longterm_radius + 1) * 2   # keyframes x 2 actors per scene
    bank.dtype = "float16"
    bank.batch_size = 8               # clips per extraction batch (a video's 16 keyframes in 2 batches)

    # From the trained ACAR run (backbone and every head parameter of the same name), then a fine-tune at half
    # the ACAR run's peak rate: at its full rate (AdamW 2e-3, fresh moments) the restart cost 8.8 pose mAP on
    # seed 0; at 1e-3 for 2 epochs the short-term groups held (docs/acfb.md, "Fine-tune rate").
    config.checkpoint.init_scope = "shared"
    config.train.num_epochs = 2.0         # 192 steps of 8 clips over the 768 train keyframes
    config.train.schedule.base_lr = 1e-4
    config.train.schedule.warmup_lr = 1e-3
    config.train.schedule.warmup_epochs = 0.2
    config.train.schedule.milestone_epochs = (1.8, 1.9)
    return config
