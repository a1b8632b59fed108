"""Packed clips: every keyframe's sampled JPEG frames, with its boxes and labels, in ArrayRecord shards.

Why: AVA is ~8M loose JPEG files; read from a bucket on a TPU pod, that many small files starve the step. A
prepared directory (`config.data.tfds_dir`, written by `tools/prepare_tfds.py`, data_pipelines/packed_prepare.py)
holds one record per keyframe, readable by position (random access), so the index-based, resumable iterator
(data_pipelines/clips.py) reads record r wherever the plan of a step says so. Layout:

  acar_clips-<split>.array_record-<i>-of-<n>  records in index order (sorted by video id, timestamp); FEATURES,
                                              serialised by TFDS; the JPEG bytes as extracted (never re-encoded)
  <split>_index.npz                           the same keyframes without frames (boxes, labels, frame size,
                                              record position): read at start to plan the batches
  packing.json                                the sampling (SAMPLING_FIELDS) and each split's index fields; a
                                              split is complete only once listed here (the commit point)
  dataset_info.json, features.json            TFDS metadata: `tfds.builder_from_directory(dir)
                                              .as_data_source(split)` reads the records as any TFDS dataset

A config whose sampling or index fields differ from the prepared ones is refused, naming the `config.data` key.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os

import ml_collections
import numpy as np
from PIL import Image

from data_pipelines.frame_index import FRAME_PATTERN, FrameReadError
from data_pipelines.records import FrameSource, KeyframeRecord

DATASET_NAME = "acar_clips"
MANIFEST = "packing.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
# What decides which frames a record holds: a config asking for another value needs other shards.
SAMPLING_FIELDS = ("num_frames", "frame_stride", "fps", "start_second")
# What decides which keyframes and boxes a split holds (ava_files.load_keyframe_records reads them).
INDEX_FIELDS = {
    "train": ("dataset", "label_map", "train_csv", "train_proposals", "train_proposal_threshold",
              "kinetics_train_csv"),
    "val": ("dataset", "label_map", "val_csv", "exclusions", "val_proposals", "val_proposal_threshold",
            "kinetics_val_csv", "kinetics_val_proposals", "kinetics_val_proposal_threshold"),
}
PREPARE_COMMAND = "python tools/prepare_tfds.py --config=<your config> --split={split}"


class NotPreparedError(FileNotFoundError):
    """The shards a config asks for are absent or incomplete; the message says how to prepare them."""


class ShardsConfigError(ValueError):
    """A config asks for another sampling or other keyframes than the shards hold; the message names the key."""


@dataclasses.dataclass(frozen=True)
class PackedSource(FrameSource):
    """A keyframe whose frames are record `position` of a split's shards (`shard_set`: "<tfds_dir>/<split>")."""
    shard_set: str = ""
    position: int = -1
    frame_hw: tuple[int, int] = (0, 0)   # original (height, width) of the frames, read when the shards were made


def shards_dir(data_config: ml_collections.ConfigDict) -> str:
    """`config.data.tfds_dir`, relative to `config.data.root` unless absolute."""
    name = str(data_config.tfds_dir or "")
    if not name:
        raise ShardsConfigError("config.data.tfds_dir is empty: set it to the folder of the prepared shards "
                         "(config.data.source='tfds')")
    return os.path.abspath(os.path.join(str(data_config.root), name))


def shard_name(split: str, index: int, count: int) -> str:
    """TFDS's default file name of shard `index` of `count` of a split."""
    return f"{DATASET_NAME}-{split}.array_record-{index:05d}-of-{count:05d}"


def index_name(split: str) -> str:
    return f"{split}_index.npz"


def features(num_classes: int):
    """The TFDS features of one record (one keyframe). `jpegs` holds the clip's frames in order, repeats included
    (the loop at a video's ends), as the bytes of the extracted files."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (only the writer and the reader need TFDS)

    return tfds.features.FeaturesDict({
        "video_id": tfds.features.Text(),
        "timestamp": tfds.features.Scalar(np.int32),
        "keyframe_index": tfds.features.Scalar(np.int32),     # frame number of the keyframe (1-based)
        "frame_hw": tfds.features.Tensor(shape=(2,), dtype=np.int32),
        "frame_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int64),
        "jpegs": tfds.features.Tensor(shape=(None,), dtype=np.object_),
        "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),    # normalised x1y1x2y2
        "labels": tfds.features.Tensor(shape=(None, num_classes), dtype=np.float32),
        "scores": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "person_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
    })


# ------------------------------------------------------------------------------------------- manifest

def config_fields(data_config: ml_collections.ConfigDict, split: str) -> tuple[dict, dict]:
    """(sampling, index fields of `split`) of a config, as the manifest stores them."""
    sampling = {k: int(data_config[k]) for k in SAMPLING_FIELDS}
    fields = {k: _plain(data_config[k]) for k in INDEX_FIELDS[split]}
    return sampling, fields


def _plain(value):
    return float(value) if isinstance(value, float) else value


def read_manifest(directory: str) -> dict | None:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: packing format {manifest.get('format')!r}, this code reads {FORMAT_VERSION}; "
                         "prepare the shards again")
    return manifest


def check_sampling(manifest: dict, data_config: ml_collections.ConfigDict, directory: str) -> None:
    """ValueError naming the first `config.data` sampling field that differs from the shards'."""
    for key, stored in manifest["sampling"].items():
        if int(data_config[key]) != int(stored):
            raise ShardsConfigError(f"config.data.{key}={data_config[key]!r}, but the shards in {directory} were "
                                    f"prepared with {key}={stored!r}; point config.data.tfds_dir at shards prepared "
                                    f"for this sampling ({PREPARE_COMMAND.format(split='train')})")


def check_index_fields(stored: dict, data_config: ml_collections.ConfigDict, directory: str, split: str) -> None:
    """ValueError naming the first `config.data` index field of `split` that differs from the shards'."""
    for key, value in stored.items():
        mine = _plain(data_config[key])
        if mine != value:
            raise ShardsConfigError(f"config.data.{key}={mine!r}, but the {split} shards in {directory} were "
                                    f"prepared with {key}={value!r} (they hold that split's keyframes and boxes); "
                                    f"prepare them again ({PREPARE_COMMAND.format(split=split)}) or use the "
                                    "prepared value")


def checked_split(data_config: ml_collections.ConfigDict, split: str) -> tuple[str, dict]:
    """(shards dir, the split's manifest entry) after checking the split is complete and matches the config."""
    directory = shards_dir(data_config)
    staging = os.path.join(directory, f"incomplete.{split}")
    partial = f" (an unfinished preparation is in {staging}: the same command resumes it)" \
        if os.path.isdir(staging) else ""
    manifest = read_manifest(directory)
    if manifest is None:
        raise NotPreparedError(f"config.data.tfds_dir: no prepared shards in {directory} ({MANIFEST} is missing)"
                               f"{partial}; prepare them: {PREPARE_COMMAND.format(split=split)}")
    check_sampling(manifest, data_config, directory)
    entry = manifest["splits"].get(split)
    if entry is None:
        raise NotPreparedError(f"config.data.tfds_dir: the {split} split is not prepared in {directory}{partial}; "
                               f"prepare it: {PREPARE_COMMAND.format(split=split)}")
    check_index_fields(entry["fields"], data_config, directory, split)
    return directory, entry


def check_prepared(data_config: ml_collections.ConfigDict, splits) -> None:
    """Raises NotPreparedError / ValueError (naming the config key) unless every split of `splits` is usable."""
    for split in splits:
        checked_split(data_config, split)


# ------------------------------------------------------------------------------------------- reading

def load_records(data_config: ml_collections.ConfigDict, split: str) -> list[KeyframeRecord]:
    """The split's keyframe records from its prepared index (no frame, CSV or shard is read): their sources
    are PackedSource, so data_pipelines/clips.py reads each clip's frames from its record."""
    directory, entry = checked_split(data_config, split)
    with np.load(os.path.join(directory, index_name(split))) as index:
        arrays = {k: index[k] for k in index.files}
    shard_set = os.path.join(directory, split)
    offsets = arrays["box_offsets"]
    records = []
    for i, video_id in enumerate(arrays["video_id"]):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        source = PackedSource(keyframe_index=int(arrays["keyframe_index"][i]),
                              num_frames=int(arrays["num_frames"][i]), shard_set=shard_set, position=i,
                              frame_hw=(int(arrays["frame_hw"][i, 0]), int(arrays["frame_hw"][i, 1])))
        records.append(KeyframeRecord(str(video_id), int(arrays["timestamp"][i]), arrays["boxes"][lo:hi],
                                      arrays["labels"][lo:hi], arrays["scores"][lo:hi],
                                      arrays["person_ids"][lo:hi], source))
    if len(records) != int(entry["num_keyframes"]):
        raise ValueError(f"{directory}/{index_name(split)} holds {len(records)} keyframes, {MANIFEST} says "
                         f"{entry['num_keyframes']}; prepare the shards again")
    return records


@functools.cache
def _data_source(shard_set: str):
    """The TFDS random-access source of a split's shards (one per process; thread-safe reads)."""
    import tensorflow_datasets as tfds  # noqa: PLC0415

    directory, split = os.path.split(shard_set)
    return tfds.builder_from_directory(directory).as_data_source(split)


def forget_readers() -> None:
    """Drops the open sources (after shards were rewritten in this process)."""
    _data_source.cache_clear()


def read_record(shard_set: str, position: int) -> dict:
    """Record `position` of a split's shards as numpy (TFDS-decoded features)."""
    return _data_source(shard_set)[int(position)]


def shard_of(shard_set: str, position: int) -> str:
    """The shard file holding record `position` (for error messages)."""
    directory, split = os.path.split(shard_set)
    manifest = read_manifest(directory) or {"splits": {}}
    lengths = manifest["splits"].get(split, {}).get("shard_lengths", [])
    ends = np.cumsum(lengths)
    i = int(np.searchsorted(ends, position, side="right"))
    return os.path.join(directory, shard_name(split, i, len(lengths))) if i < len(lengths) else directory


def read_jpegs(shard_set: bytes, position, video_id: bytes, timestamp) -> np.ndarray:
    """[T] JPEG bytes of record `position`, checked to be keyframe (video_id, timestamp) (tf.numpy_function)."""
    shard_set = shard_set.decode() if isinstance(shard_set, bytes) else str(shard_set)
    record = read_record(shard_set, int(position))
    got = (record["video_id"].decode(), int(record["timestamp"]))
    want = (video_id.decode() if isinstance(video_id, bytes) else str(video_id), int(timestamp))
    if got != want:
        raise ValueError(f"{shard_of(shard_set, int(position))}: record {int(position)} holds keyframe "
                         f"{got[0]},{got[1]}, the index says {want[0]},{want[1]}; prepare the shards again")
    return np.asarray(record["jpegs"], dtype=object)


def check_clip(source: PackedSource, record: KeyframeRecord) -> None:
    """Re-reads a keyframe's record and decodes its frames with PIL; FrameReadError naming the shard file, the
    record and the frame at fault (the diagnosis of a failed batch)."""
    where = f"{shard_of(source.shard_set, source.position)}, record {source.position}"
    try:
        jpegs = read_jpegs(source.shard_set.encode(), source.position, record.video_id.encode(), record.timestamp)
        numbers = read_record(source.shard_set, source.position)["frame_numbers"]
    except Exception as e:  # noqa: BLE001 (any failure to read the record is reported with its place)
        raise FrameReadError(f"cannot read packed clip ({where}): {e}") from e
    for data, number in zip(jpegs, numbers, strict=True):
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.convert("RGB")
        except (OSError, ValueError, SyntaxError) as e:
            raise FrameReadError(f"cannot decode frame {FRAME_PATTERN.format(int(number))} of packed clip "
                                 f"({where}): {e}") from e
