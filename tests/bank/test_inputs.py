"""What a feature-bank run reads: the bank of its source ACAR run, checked at start-up (before step 0) against the
fingerprint of that run's weights, the split, the boxes and the scale; every bad bank is one error naming the
file and the config key. Windows reach the batches with the clips' flips."""

from __future__ import annotations

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest
from flax import nnx

from acar_jax.bank import inputs
from acar_jax.launch.prepare import prepare_data
from acar_jax.state import checkpoints, train_state
from configs import default
from data_pipelines import bank_files
from data_pipelines.bank_files import BankError
from tests.helpers import bank_entry, tiny_models

D = 32          # the tiny default head's hidden_dim: the depth of a first-order map
GRID = (2, 3)   # 64x80 clips: a 4x5 feature map, minus 2 for the valid 3x3 conv


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny synthetic dataset, a source ACAR run (a fresh model saved as step 0) and an ACFB config on it."""
    tmp = tmp_path_factory.mktemp("bank_inputs")
    prepare_data(bank_entry.tiny_config(str(tmp / "data"), ""))
    # The source run's weights: any checkpoint serves (the consumer digests the checkpoint as stored, and the
    # fingerprint's model config comes from bank.source_config), so a stand-in model keeps this fast.
    _, params, batch_stats, _ = train_state.split_model(tiny_models.TinyDetector(rngs=nnx.Rngs(0), num_classes=3))
    checkpoints.write_model_checkpoint(str(tmp / "acar" / "checkpoints"), params, batch_stats)
    config = bank_entry.tiny_config(str(tmp / "data"), str(tmp / "bank"))
    config.model.head.type, config.model.head.downsample = "acfb", "none"
    config.bank.source_config = default.get_config()
    config.bank.source_workdir = str(tmp / "acar")
    source, digest = inputs.bank_source_config(config), inputs.source_params_digest(config, "unused")
    fingerprints = {split: inputs.bank_fingerprint(config, source, digest, split, 64)
                    for split in ("train", "val")}
    return tmp, config, fingerprints


def write_bank(config, split: str, fingerprint: str, *, drop_video: bool = False, complete: bool = True) -> str:
    """A bank of `split` at scale 64: every keyframe's boxes with maps of value t (the timestamp)."""
    from data_pipelines import ava_files

    root = inputs.bank_directory(config, "unused", split, 64)
    shutil.rmtree(root, ignore_errors=True)
    records = ava_files.load_keyframe_records(config.data, split)
    videos = sorted({r.video_id for r in records})[: -1 if drop_video else None]
    bank_files.start_bank(root, fingerprint=fingerprint, split=split, dtype="float32", videos=videos)
    for video in videos:
        entries = [bank_files.Entry(r.timestamp, r.boxes, np.full((r.num_boxes, *GRID, D), r.timestamp % 100,
                                                                   np.float32))
                   for r in records if r.video_id == video]
        bank_files.write_video(root, video, entries, "float32")
    if complete:
        bank_files.mark_complete(root)
    return root


def test_windows_reach_train_and_eval_batches_flipped_with_the_clip(setup):
    tmp, config, fps = setup
    for split in ("train", "val"):
        write_bank(config, split, fps[split])
    bank = inputs.open_bank_inputs(config, str(tmp / "run"), ("train", "val"))
    clip = np.zeros((2, 8, 64, 80, 3), np.float32)
    video = bank.train.reader.manifest["videos"][0]
    batch = {"clips": clip, "video_id": np.asarray([video, ""], object), "timestamp": np.asarray([902, 0]),
             "clip_mask": np.asarray([True, False]), "flip": np.asarray([True, False])}
    out = next(bank.train_batches(iter([dict(batch)])))
    assert out["bank"].shape == (2, config.bank.max_entries, *GRID, D)
    assert out["bank_mask"][1].sum() == 0 and out["bank_mask"][0].sum() > 0   # filler clip: an empty window
    assert set(np.unique(out["bank"][0][out["bank_mask"][0]])) <= {1.0, 2.0, 3.0}   # keyframes 901..903
    from acar_jax.evaluation.views import View

    val_video = bank.val[64].reader.manifest["videos"][0]
    extra = bank.eval_inputs(dict(batch, video_id=np.asarray([val_video, ""], object)), View(64, True))
    assert set(extra) == {"bank", "bank_mask"} and extra["bank_mask"][0].any()


def test_no_bank_names_the_manifest_and_the_keys(setup):
    tmp, config, fps = setup
    shutil.rmtree(inputs.bank_directory(config, "unused", "train", 64), ignore_errors=True)
    with pytest.raises(BankError, match=r"train_s64/manifest.json: no bank manifest .*"
                                        r"model.head.type 'acfb' reads .* bank.source_workdir="):
        inputs.open_bank_inputs(config, str(tmp / "run"), ("train",))


@pytest.mark.parametrize("case", ["other_model", "other_split", "missing_video", "missing_file", "incomplete"])
def test_bad_bank_is_one_error_naming_the_file_and_key(setup, case):
    tmp, config, fps = setup
    fingerprint = {"other_model": "0" * 20, "other_split": fps["val"]}.get(case, fps["train"])
    root = write_bank(config, "train", fingerprint, drop_video=case == "missing_video",
                      complete=case != "incomplete")
    if case == "other_split":   # the val bank put where the train bank belongs
        with open(os.path.join(root, "manifest.json")) as f:
            manifest = json.load(f)
        bank_files._write_json_atomic(os.path.join(root, "manifest.json"), dict(manifest, split="val"))
    if case == "missing_file":
        os.remove(bank_files.video_path(root, sorted(bank_files.finished_videos(root))[0]))
    want = {"other_model": r"manifest.json: key 'fingerprint' is '0+', expected .*another model or split",
            "other_split": r"manifest.json: key 'fingerprint' .*another model or split",
            "missing_video": r"manifest.json: 1 of the 2 videos to read are not in this bank",
            "missing_file": r"\.tfrecord: missing file of video",
            "incomplete": r"manifest.json: the bank is not complete"}[case]
    with pytest.raises(BankError, match=want + r".*\[model.head.type 'acfb' reads bank.content 'maps'"):
        inputs.open_bank_inputs(config, str(tmp / "run"), ("train",))


def test_no_source_run_or_source_config_names_the_key(setup):
    tmp, config, _ = setup
    no_run = config.copy_and_resolve_references()
    no_run.bank.source_workdir = str(tmp / "nowhere")
    with pytest.raises(BankError, match=r"'acfb' reads a bank: no checkpoint in .*nowhere/checkpoints "
                                        r"\(bank.source_workdir\)"):
        inputs.open_bank_inputs(no_run, str(tmp / "run"), ("val",))
    no_config = config.copy_and_resolve_references()
    no_config.bank.source_config = ml_collections.ConfigDict()
    with pytest.raises(BankError, match=r"bank.source_config: model.head.type 'acfb' reads a bank"):
        inputs.open_bank_inputs(no_config, str(tmp / "run"), ("val",))
    assert inputs.open_bank_inputs(bank_entry.tiny_config(str(tmp / "data"), ""), "x", ("val",)) is None


def test_multi_scale_eval_needs_one_val_bank_per_scale(setup):
    tmp, config, fps = setup
    write_bank(config, "val", fps["val"])          # scale 64 only
    two_scales = config.copy_and_resolve_references()
    two_scales.data.eval_scales = (64, 80)
    with pytest.raises(BankError, match=r"val_s80/manifest.json: no bank manifest"):
        inputs.open_bank_inputs(two_scales, str(tmp / "run"), ("val",))
