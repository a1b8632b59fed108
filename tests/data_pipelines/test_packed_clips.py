"""Packed clips (ArrayRecord shards, data.source="tfds"): the batches equal those read from the frame files, step
for step and after a resume from a checkpoint; a config of another sampling, a typo in data.source and a
half-written preparation are refused; an interrupted preparation resumes. A tiny synthetic set (12 train
keyframes of 64x80) whose clips of 16 frames at stride 5 overrun both ends of each video (the loop)."""

from __future__ import annotations

import os

import ml_collections
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from acar_jax.state import checkpoints, train_state
from configs.default import get_config
from data_pipelines import ava_files, clips, packed_clips, packed_prepare, sources, synthetic

BATCH = 4


def _config(root: str) -> ml_collections.ConfigDict:
    config = get_config()
    synth = config.synthetic
    synth.num_train_videos, synth.num_val_videos, synth.keyframes_per_video = 2, 1, 6
    synth.height, synth.width, synth.relation_gap = 64, 80, 8
    data = config.data
    data.root = root
    data.num_frames, data.frame_stride = 16, 5      # an 80-frame window overruns both ends of each 210-frame video
    data.short_side, data.eval_scales, data.num_parallel_calls = 64, (64,), 2
    return config


def _with(data: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
    out = ml_collections.ConfigDict(data.to_dict())
    for k, v in fields.items():
        out[k] = v
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    config = _config(str(tmp_path_factory.mktemp("synthetic") / "data"))
    synthetic.ensure_synthetic_dataset(config.data.root, config.synthetic)
    for split in ("train", "val"):
        packed_prepare.prepare_split(config.data, split, num_classes=config.model.num_classes, keyframes_per_shard=5,
                                     log=lambda line: None)
    return config


def _batches(records, data, start_step=0, n=4):
    inp = clips.TrainInput(records, data, global_batch_size=BATCH, seed=0, num_classes=9)
    return inp, [b for _, b in zip(range(n), inp.iterator(start_step=start_step), strict=False)]


def _assert_equal(got, want, what):
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys()
        for key in w:
            np.testing.assert_array_equal(g[key], w[key], err_msg=f"{what} step {step} {key}")


def test_shard_batches_equal_frame_batches_step_for_step_and_after_resume(prepared, tmp_path):
    data = prepared.data
    frame_records = ava_files.load_keyframe_records(data, "train")
    packed = _with(data, source="tfds")
    packed_records = sources.keyframe_records(packed, "train")
    assert all(isinstance(r.source, packed_clips.PackedSource) for r in packed_records)
    frames_input, want = _batches(frame_records, data)
    frames_dir = os.path.join(data.root, data.frames_dir)
    os.rename(frames_dir, frames_dir + ".away")          # the shards alone make the batches
    try:
        packed_input, got = _batches(packed_records, packed)
    finally:
        os.rename(frames_dir + ".away", frames_dir)
    assert frames_input.steps_per_epoch == packed_input.steps_per_epoch == 3      # 4 steps cross an epoch
    assert frames_input.buckets == packed_input.buckets
    _assert_equal(got, want, "shards vs frames")

    # Resume: the iterator position (the step) saved in a checkpoint, restored by a new Checkpointer as the loop
    # restores it (a one-layer model keeps this fast; the state's structure is what orbax saves).
    _, _, state = train_state.create_train_state(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
    ckpt = checkpoints.Checkpointer(str(tmp_path), every_steps=1, max_to_keep=1)
    ckpt.save(state.replace(step=np.asarray(2, np.int32)), force=True)
    ckpt.close()
    restored = checkpoints.Checkpointer(str(tmp_path), every_steps=1, max_to_keep=1)
    start = int(restored.restore(state).step)
    restored.close()
    assert start == 2
    _, resumed = _batches(sources.keyframe_records(packed, "train"), packed, start_step=start, n=2)
    _assert_equal(resumed, want[2:], "resumed shards vs uninterrupted frames")


def test_eval_batches_from_shards_equal_frame_batches(prepared):
    data = prepared.data
    packed = _with(data, source="tfds")
    for flip in (True,):  # the flipped view: boxes and pixels flipped alike
        want = list(clips.eval_batches(ava_files.load_keyframe_records(data, "val"), data, batch_size=BATCH,
                                       scale=64, flip=flip))
        got = list(clips.eval_batches(sources.keyframe_records(packed, "val"), packed, batch_size=BATCH,
                                      scale=64, flip=flip))
        assert len(want) >= 2
        _assert_equal(got, want, f"eval flip={flip}")


def test_records_hold_the_extracted_jpeg_bytes_and_read_as_a_tfds_dataset(prepared):
    data = prepared.data
    directory = packed_clips.shards_dir(data)
    ds = tfds.builder_from_directory(directory).as_data_source("train")
    frames = ava_files.load_keyframe_records(data, "train")
    assert len(ds) == len(frames) == 12
    for i in (0, 11):                                  # the first and last keyframes loop at the video ends
        ex, rec = ds[i], frames[i]
        numbers = packed_prepare.clip_frame_numbers(rec, data)
        k = rec.source.keyframe_index
        assert not np.array_equal(numbers, np.arange(k - 40, k + 40, 5)), "the window overruns the video end"
        assert len(set(numbers.tolist())) < len(numbers), "the loop repeats frames"
        np.testing.assert_array_equal(ex["frame_numbers"], numbers)
        for data_bytes, n in zip(ex["jpegs"], numbers, strict=True):
            with open(os.path.join(rec.source.frames_dir, f"image_{n:06d}.jpg"), "rb") as f:
                assert data_bytes == f.read()
        assert (ex["video_id"].decode(), int(ex["timestamp"])) == (rec.video_id, rec.timestamp)
        np.testing.assert_array_equal(ex["boxes"], rec.boxes)
        np.testing.assert_array_equal(ex["labels"], rec.labels)
        assert tuple(ex["frame_hw"]) == (64, 80)


def test_another_sampling_or_index_or_source_is_an_error_naming_the_key(prepared):
    data = _with(prepared.data, source="tfds")
    with pytest.raises(packed_clips.ShardsConfigError, match=r"config\.data\.frame_stride=2.*frame_stride=5"):
        sources.keyframe_records(_with(data, frame_stride=2), "train")
    with pytest.raises(packed_clips.ShardsConfigError, match=r"config\.data\.num_frames=8"):
        sources.check_data_files(_with(data, num_frames=8), ("train",))
    with pytest.raises(packed_clips.ShardsConfigError, match=r"config\.data\.val_proposal_threshold=0\.5"):
        sources.keyframe_records(_with(data, val_proposal_threshold=0.5), "val")
    with pytest.raises(sources.DataSourceError, match=r"config\.data\.source.*'tfsd'"):
        sources.keyframe_records(_with(data, source="tfsd"), "train")
    with pytest.raises(packed_clips.NotPreparedError, match=r"config\.data\.tfds_dir: no prepared shards"):
        sources.keyframe_records(_with(data, tfds_dir="elsewhere"), "train")


class Crash(Exception):
    pass


def test_interrupted_preparation_is_never_read_and_resumes(prepared, tmp_path, monkeypatch):
    data = _with(prepared.data, tfds_dir=str(tmp_path / "shards"))
    written = []
    real_write = packed_prepare._write_shard

    def write_then_fail(path, serialized):
        if written:
            with open(path + ".tmp", "wb") as f:          # a shard cut short by the crash
                f.write(b"partial")
            raise Crash
        written.append(os.path.basename(path))
        return real_write(path, serialized)

    monkeypatch.setattr(packed_prepare, "_write_shard", write_then_fail)
    with pytest.raises(Crash):
        packed_prepare.prepare_split(data, "train", num_classes=9, keyframes_per_shard=5, log=lambda line: None)
    with pytest.raises(packed_clips.NotPreparedError, match="unfinished preparation.*resumes"):
        sources.keyframe_records(_with(data, source="tfds"), "train")

    monkeypatch.setattr(packed_prepare, "_write_shard", lambda path, s: (written.append(os.path.basename(path)),
                                                                          real_write(path, s))[1])
    packed_prepare.prepare_split(data, "train", num_classes=9, keyframes_per_shard=5, log=lambda line: None)
    assert written == [packed_clips.shard_name("train", i, 3) for i in range(3)], "the complete shard is kept"
    assert not os.path.exists(tmp_path / "shards" / "incomplete.train")
    _, want = _batches(ava_files.load_keyframe_records(prepared.data, "train"), prepared.data, n=1)
    tfds_data = _with(data, source="tfds")
    _, got = _batches(sources.keyframe_records(tfds_data, "train"), tfds_data, n=1)
    _assert_equal(got, want, "resumed preparation")
