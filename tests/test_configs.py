"""Every config file loads through `config_flags` (as run.py loads it), has exactly base.py's fields (so do the
source and variant configs a bank config imports), and
holds the values that define the reference config or paper recipe it names (table below, from the reference's
configs/AVA/*.yaml, its slowfast.py defaults and the AVA-Kinetics report's training recipe)."""

from __future__ import annotations

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from configs import base
from tests.helpers import paths

ROOT = paths.REPO
CONFIG_FILES = sorted(p.name for p in (ROOT / "configs").glob("*.py") if p.name != "__init__.py")


def load(name: str, *overrides: str) -> ml_collections.ConfigDict:
    """Loads configs/<name> exactly as run.py does: a config_flags file flag plus `--config.x=y` overrides."""
    argv = ["prog", f"--config={ROOT / 'configs' / name}", *overrides]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    return flag_values.config


NESTED_CONFIGS = ("bank.source_config", "bank.chain_variants")   # whole configs (or name -> config) inside


def flat(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every field; the nested configs of NESTED_CONFIGS count as one field each."""
    out = {}
    for key, value in config.items():
        if f"{prefix}{key}" in NESTED_CONFIGS:
            out[f"{prefix}{key}"] = value
        elif isinstance(value, ml_collections.ConfigDict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_expected_config_file_exists():
    expected = {"default.py", "default_linear.py", "ava_slowfast_r50_linear.py", "ava_slowfast_r50_acar.py",
                "ava_slowfast_r101_acar.py", "avakinetics_slowfast_r101_acar.py",
                "avakinetics_slowfast_r101_acar_16x8.py", "avakinetics_slowfast_r152_acar.py",
                "avakinetics_slowfast_r152_acar_16x8.py"}
    assert expected <= set(CONFIG_FILES)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_has_exactly_the_base_fields(name):
    """No typo'd field: the set of dotted keys equals base.py's, and every value keeps base's type; the same
    for the source config and each variant config a bank config imports."""
    check_fields(load(name), name)


def check_fields(config: ml_collections.ConfigDict, name: str) -> None:
    reference = flat(base.get_config())
    got = flat(config)
    assert set(got) == set(reference), (
        f"{name}: extra {sorted(set(got) - set(reference))}, missing {sorted(set(reference) - set(got))}")
    for key, value in got.items():
        ref_type = type(reference[key])
        assert isinstance(value, ref_type) or (ref_type is float and isinstance(value, int)), (
            f"{name}: {key} is {type(value).__name__}, base.py has {ref_type.__name__}")
    if config.bank.source_config.keys():
        check_fields(config.bank.source_config, f"{name} bank.source_config")
    for variant, variant_config in config.bank.chain_variants.items():
        check_fields(variant_config, f"{name} bank.chain_variants.{variant}")


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_rejects_typo_override(name):
    """A typo'd override is refused by config_flags (it is not silently added as a new field)."""
    with pytest.raises(AttributeError, match="lr_typo"):
        load(name, "--config.train.schedule.lr_typo=1")
    assert load(name, "--config.train.schedule.warmup_lr=0.5").train.schedule.warmup_lr == 0.5


R50_ACAR = {  # reference configs/AVA/SLOWFAST_R50_ACAR_HR2O.yaml
    "seed": 1, "model.num_classes": 60,
    "model.backbone.layers": (3, 4, 6, 3), "model.backbone.alpha": 4, "model.backbone.beta": 0.125,
    "model.backbone.fuse_only_conv": False, "model.backbone.fuse_kernel_size": 7,
    "model.backbone.slow_full_span": True, "model.backbone.width": 64, "model.backbone.res5_dilation": 2,
    "model.head.type": "acar", "model.head.roi_spatial": 7, "model.head.depth": 2,
    "model.head.mlp_1x1": False, "model.head.reduce_dim": 1024, "model.head.hidden_dim": 512,
    "model.head.kernel_size": 3,
    "model.head.downsample": "max2x2", "model.head.dropout": 0.0, "model.head.hr2o_dropout": 0.2,
    "data.dataset": "ava", "data.label_map": "ava_action_list_v2.2_for_activitynet_2019.pbtxt",
    "data.val_csv": "ava_val_v2.2.csv", "data.exclusions": "ava_val_excluded_timestamps_v2.2.csv",
    "data.train_proposal_threshold": 0.9, "data.val_proposal_threshold": 0.85,
    "data.num_frames": 32, "data.frame_stride": 2, "data.short_side": 256, "data.eval_scales": (256,),
    "data.eval_flip": False, "data.hflip": True, "data.pixel_scale": 255.0,
    "data.mean": (0.45, 0.45, 0.45), "data.std": (0.225, 0.225, 0.225), "data.box_jitter": 0.075,
    "train.pose_softmax": True, "train.num_pose_classes": 13, "train.num_epochs": 6.0, "train.num_steps": -1,
    "train.optimizer.name": "sgd", "train.optimizer.momentum": 0.9, "train.optimizer.nesterov": True,
    "train.optimizer.weight_decay": 1e-7, "train.schedule.type": "step", "train.schedule.base_lr": 0.008,
    "train.schedule.warmup_lr": 0.064,
    "train.schedule.warmup_epochs": 1.0, "train.schedule.milestone_epochs": (5.6, 5.8),
    "train.schedule.lr_mults": (0.1, 0.1), "train.schedule.warmup_steps": -1,
    "train.schedule.milestone_steps": (),
    "checkpoint.init_from": "pretrained/SLOWFAST_R50_K400", "checkpoint.init_scope": "backbone",
    "train.batch_size": 32, "train.scale_lr_with_batch": True, "train.reference_batch_size": 32,
    "data.root": "data/ava", "data.frames_dir": "frames", "data.train_csv": "ava_train_v2.2.csv",
    "data.train_proposals":
        "person_box_67091280_iou90/ava_detection_train_boxes_and_labels_include_negative_v2.2.csv",
    "data.val_proposals": "person_box_67091280_iou90/ava_detection_val_boxes_and_labels.csv",
}
R50_LINEAR = {**R50_ACAR, "model.head.type": "linear"}  # reference SLOWFAST_R50_baseline.yaml
R101_ACAR = {  # reference SLOWFAST_R101_ACAR_HR2O_DEPTH1.yaml + slowfast.py defaults (docs/reference_configs.md)
    **R50_ACAR,
    "model.backbone.layers": (3, 4, 23, 3), "model.backbone.fuse_only_conv": True,
    "model.backbone.fuse_kernel_size": 5, "model.backbone.slow_full_span": False,
    "model.head.depth": 1, "model.head.mlp_1x1": True,
    "data.pixel_scale": 1.0, "data.mean": (110.63666788, 103.16065604, 96.29023126),
    "data.std": (38.7568578, 37.88248729, 40.02898126),
    "train.num_epochs": 5.0, "train.schedule.milestone_epochs": (4.6, 4.8),
    "checkpoint.init_from": "pretrained/SLOWFAST_R101_K700",
}
AVAK_R101 = {  # R101 architecture + the paper's AVA-Kinetics recipe (its "Training" section)
    **R101_ACAR,
    "data.dataset": "ava_kinetics", "data.root": "data/ava_kinetics",
    "data.kinetics_train_csv": "kinetics_train_v1.0.csv",
    "data.kinetics_val_csv": "kinetics_val_v1.0.csv",
    "data.val_proposal_threshold": 0.7, "data.kinetics_val_proposal_threshold": 0.65,
    "train.batch_size": 32, "train.num_epochs": 6.0, "train.num_steps": 55_000,
    "train.schedule.warmup_lr": 0.064, "train.schedule.warmup_steps": 9_000,
    "train.schedule.milestone_steps": (51_000, 53_000),
    "train.schedule.lr_mults": (0.1, 0.1), "train.optimizer.weight_decay": 1e-7,
}
AVAK_R101_16 = {**AVAK_R101, "data.num_frames": 64, "data.frame_stride": 2, "model.backbone.alpha": 4,
                "checkpoint.init_from": "pretrained/SLOWFAST_R101_16x8_K700"}
AVAK_R152 = {**AVAK_R101, "model.backbone.layers": (3, 8, 36, 3),
             "checkpoint.init_from": "pretrained/SLOWFAST_R152_K700"}
AVAK_R152_16 = {**AVAK_R152, "data.num_frames": 64, "data.frame_stride": 2, "model.backbone.alpha": 4,
                "checkpoint.init_from": "pretrained/SLOWFAST_R152_16x8_K700"}

AVAK_R101_EVAL_AVA = {  # the zoo's AVA-Kinetics model on AVA val (reference evalAVA_..._DEPTH1.yaml)
    **{k: v for k, v in R101_ACAR.items() if not k.startswith("train.")},
    "data.dataset": "ava", "data.val_proposal_threshold": 0.85, "data.kinetics_val_csv": "",
    "data.kinetics_val_proposals": "", "checkpoint.init_from": "",
}
EXPECTED = {
    "ava_slowfast_r50_acar.py": R50_ACAR,
    "ava_slowfast_r50_linear.py": R50_LINEAR,
    "ava_slowfast_r101_acar.py": R101_ACAR,
    "avakinetics_slowfast_r101_acar.py": AVAK_R101,
    "avakinetics_slowfast_r101_acar_16x8.py": AVAK_R101_16,
    "avakinetics_slowfast_r152_acar.py": AVAK_R152,
    "avakinetics_slowfast_r152_acar_16x8.py": AVAK_R152_16,
    "avakinetics_slowfast_r101_acar_eval_ava.py": AVAK_R101_EVAL_AVA,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_values(name):
    got = flat(load(name))
    wrong = {k: (got[k], v) for k, v in EXPECTED[name].items() if got[k] != v}
    assert not wrong, f"{name}: (got, expected) {wrong}"


def test_default_linear_differs_from_default_only_in_head_type():
    got, ref = flat(load("default_linear.py")), flat(load("default.py"))
    assert {k for k in ref if got[k] != ref[k]} == {"model.head.type"}
    assert got["model.head.type"] == "linear"
