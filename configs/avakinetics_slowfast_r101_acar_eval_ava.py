"""The released AVA-Kinetics R101 model on AVA v2.2 val: how the model zoo's 33.74 / 33.70 mAP was measured.

The reference evaluates its AVA-Kinetics model (model_zoo AVA-Kinetics_SLOWFAST_R101_ACAR_HR2O_DEPTH1.pth.tar)
on AVA v2.2 val only, with the LFB detections >= 0.85, the AVA val GT, exclusions and the 60-class label map
(its configs/AVA-Kinetics/evalAVA_SLOWFAST_R101_ACAR_HR2O_DEPTH1.yaml): no Kinetics val detections were released.
So this is `avakinetics_slowfast_r101_acar.py` (the same architecture and preprocessing) with the AVA data
fields of `ava_slowfast_r101_acar.py`. An evaluation config:
  python tools/convert_torch_checkpoint.py --input AVA-Kinetics_SLOWFAST_R101_ACAR_HR2O_DEPTH1.pth.tar \\
      --config=configs/avakinetics_slowfast_r101_acar_eval_ava.py --output runs/zoo_avak_r101
  python run.py --config=configs/avakinetics_slowfast_r101_acar_eval_ava.py --workdir=runs/zoo_avak_r101 --mode=eval
"""

import ml_collections

from configs import ava_slowfast_r101_acar, avakinetics_slowfast_r101_acar


def get_config() -> ml_collections.ConfigDict:
    """The AVA-Kinetics R101 model, evaluated on AVA v2.2 val with detections >= 0.85."""
    config = avakinetics_slowfast_r101_acar.get_config()
    config.data = ava_slowfast_r101_acar.get_config().data   # AVA v2.2 files under data/ava, val >= 0.85
    config.checkpoint.init_from = ""                         # the converted model is the workdir's checkpoint
    return config
