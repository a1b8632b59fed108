"""TFDS builder of the keyframe index: built from official-format fixtures in tmp_path, read back equal to the
records `load_keyframe_records` gives; `tfds.load` and `tfds.split_for_jax_process` work."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import tfds_ava
from data_pipelines.ava_files import load_keyframe_records
from tests.helpers import ava_fixtures as fx


def _assert_same_records(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.video_id, g.timestamp, g.source) == (w.video_id, w.timestamp, w.source)
        for field in ("boxes", "labels", "scores", "person_ids"):
            np.testing.assert_array_equal(getattr(g, field), getattr(w, field))
            assert getattr(g, field).dtype == getattr(w, field).dtype


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava_root")
    fx.write_ava_root(root)
    data = fx.data_config(root)
    config = tfds_ava.config_from_data("fixture", data, num_classes=60)
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds_ava.AvaKeyframes(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    return builder, data, config, data_dir, root


def test_builder_round_trips_the_records(prepared):
    builder, data, *_ = prepared
    assert builder.info.splits["train"].num_examples == 3 and builder.info.splits["val"].num_examples == 2
    for split in ("train", "val"):
        got = [tfds_ava.record_from_example(ex) for ex in tfds.as_numpy(builder.as_dataset(split=split))]
        _assert_same_records(got, load_keyframe_records(data, split))
    first = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
    assert first["video_id"] == b"-5KQ66BBWC4" and first["labels"].shape == (3, 60)


def test_tfds_load_and_split_for_jax_process(prepared):
    _, data, config, data_dir, root = prepared
    want = load_keyframe_records(data, "train")
    per_host = []
    for process_index in range(2):
        split = tfds.split_for_jax_process("train", process_index=process_index, process_count=2)
        ds = tfds.load("ava_keyframes", split=split, data_dir=str(data_dir),
                       builder_kwargs={"config": config}, download=False)
        per_host.append([tfds_ava.record_from_example(ex) for ex in tfds.as_numpy(ds)])
    assert [len(p) for p in per_host] == [2, 1]
    _assert_same_records(per_host[0] + per_host[1], want)


def test_builder_rejects_a_label_map_of_another_size(tmp_path):
    fx.write_ava_root(tmp_path / "root")
    config = tfds_ava.config_from_data("wrong_k", fx.data_config(tmp_path / "root"), num_classes=80)
    builder = tfds_ava.AvaKeyframes(config=config, data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="expects 80 classes but the label map .* has 60"):
        manual = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "root"))
        builder.download_and_prepare(download_config=manual)


def test_unknown_data_field_is_an_error(tmp_path):
    config = tfds_ava.AvaKeyframesConfig(name="bad", data={"train_cvs": "x.csv"})
    with pytest.raises(KeyError, match=r"unknown data field\(s\) \['train_cvs'\]"):
        tfds_ava.data_config_for(config, str(tmp_path))


def test_synthetic_config_builds_from_the_generated_dataset(tmp_path):
    from configs import default
    from data_pipelines import synthetic
    synth = default.get_config().synthetic
    synth.num_train_videos, synth.num_val_videos, synth.keyframes_per_video = 1, 1, 2
    root = tmp_path / "synthetic"
    synthetic.ensure_synthetic_dataset(str(root), synth)
    builder = tfds_ava.AvaKeyframes(config="synthetic", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    data = tfds_ava.data_config_for(builder.builder_config, str(root))
    for split in ("train", "val"):
        got = [tfds_ava.record_from_example(ex) for ex in tfds.as_numpy(builder.as_dataset(split=split))]
        assert got, split
        _assert_same_records(got, load_keyframe_records(data, split))
