"""AVA v2.2, SlowFast R50 8x8 + ACFB head: ACAR's actor-context feature bank (the AVA-Kinetics challenge
report, "Actor-Context Feature Bank"; docs/acfb.md), on top of `ava_slowfast_r50_acar.py`.

Three commands (train the ACAR source run, extract its bank, train and evaluate ACFB):
  python run.py --config=configs/ava_slowfast_r50_acar.py --workdir=runs/ava_slowfast_r50_acar
  python run.py --config=configs/ava_slowfast_r50_acfb.py --workdir=runs/ava_slowfast_r50_acfb --mode=extract_bank
  python run.py --config=configs/ava_slowfast_r50_acfb.py --workdir=runs/ava_slowfast_r50_acfb
The bank: the ACAR run's first-order actor-context maps at every keyframe (1 s apart) on the ground-truth boxes
(paper: GT boxes for AVA), about 228 GB in float16 for the train split (README, "ACFB"); the window is +-10 s
around the keyframe (paper: "about 20 s"). The head: two bank relation blocks (paper: HR2O-NL, two blocks,
self-attention replaced by attention from the current to the long-term relations), no spatial max pool before
them (paper: "for faster convergence"), ACAR's classifier. ACFB starts from the trained ACAR run (backbone and
head parameters of the same name; `checkpoint.init_scope = "shared"`) and trains with the ACAR recipe: the paper
gives no separate ACFB schedule (our choice). Multi-scale test: one bank per test scale (docs/acfb.md):
  ... --mode=extract_bank --config.data.eval_scales='(256, 288, 320)' --config.data.eval_flip=True
"""

import ml_collections

from configs import ava_slowfast_r50_acar


def get_config() -> ml_collections.ConfigDict:
    """R50 ACFB on AVA v2.2: the ACAR R50 recipe with the bank head."""
    config = ava_slowfast_r50_acar.get_config()
    head = config.model.head
    head.type = "acfb"                # paper: ACFB head on the ACAR model's first-order maps
    head.depth = 2                    # paper: two stacked blocks
    head.downsample = "none"          # paper: no spatial max pool before HR2O-NL in ACFB

    bank = config.bank
    bank.source_config = ava_slowfast_r50_acar.get_config()   # the ACAR run the bank comes from
    bank.source_workdir = "runs/ava_slowfast_r50_acar"   # run.py's default workdir of that config
    bank.content = "maps"
    bank.train_boxes = "gt"           # paper: GT boxes for the AVA bank
    bank.val_boxes = "gt"
    bank.window_radius = 10           # paper: about 20 s for AVA (+-10 s around the keyframe)
    bank.whole_video = False
    bank.max_entries = 256            # 21 keyframes x up to ~12 actors; a fuller window is an error naming it
    bank.cache_mb = 2048.0            # R50 maps: ~0.4 MB per actor-second, ~25 MB per +-10 s window

    config.checkpoint.init_from = "runs/ava_slowfast_r50_acar"   # start from the trained ACAR run
    config.checkpoint.init_scope = "shared"
    return config
