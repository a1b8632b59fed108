"""Writes a split's packed clips (data_pipelines/packed_clips.py): resumable, and never half-written.

  prepare_split(config.data, "train", num_classes=60)   # tools/prepare_tfds.py is the command line

Each keyframe of `ava_files.load_keyframe_records` (the same strict readers and box rules as training from frame
files) becomes one record: the JPEG files of its clip's frames, read as bytes, at the config's `num_frames` and
`frame_stride`, picked by `frame_index.clip_frame_indices` exactly as clips.py picks them from loose frames
(the reference's loop where the window leaves the video), with its boxes, labels, scores, person ids, frame size,
video id and timestamp.

Atomicity: shards are written into `<dir>/incomplete.<split>/` as `<name>.tmp` and renamed when closed, so a
shard that exists under its name is complete; a re-run of the same command skips those and writes the rest. Once
every shard and the index exist, they move into `<dir>`, the TFDS metadata is rewritten, and the split is added
to packing.json last: readers take only splits listed there. A preparation for other records, sampling or shard
size restarts the split from scratch.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
from PIL import Image

from data_pipelines import ava_files, frame_index, packed_clips
from data_pipelines.records import KeyframeRecord

WRITER_OPTIONS = "group_size:1,uncompressed"   # one record per chunk (random access); JPEG does not compress
READ_THREADS = 8                                # frame files read in parallel (I/O bound)


def clip_frame_numbers(record: KeyframeRecord, data_config: ml_collections.ConfigDict) -> np.ndarray:
    """The 1-based frame numbers of a keyframe's clip, as clips.py samples a frame folder."""
    src = record.source
    if src.video_path:
        raise ValueError(f"keyframe {record.video_id},{record.timestamp}: its frames are in the video "
                         f"{src.video_path}, not in JPEG files; extract them first (tools/extract_frames.py "
                         "--kinetics), packing stores the JPEG files as extracted")
    return frame_index.clip_frame_indices(src.keyframe_index, int(data_config.num_frames),
                                          int(data_config.frame_stride), src.num_frames, policy="loop",
                                          first_index=1)


def _frame_sizes(records: Sequence[KeyframeRecord]) -> list[tuple[int, int]]:
    """(height, width) per record from one JPEG header per video (its first keyframe), as clips.py probes it."""
    per_video: dict[str, tuple[int, int]] = {}
    sizes = []
    for rec in records:
        folder = rec.source.frames_dir
        if folder not in per_video:
            path = frame_index.frame_paths(folder, [rec.source.keyframe_index])[0]
            try:
                with Image.open(path) as img:
                    width, height = img.size
            except OSError as e:
                raise frame_index.FrameReadError(f"cannot read the JPEG header of frame {path}: {e}") from e
            per_video[folder] = (int(height), int(width))
        sizes.append(per_video[folder])
    return sizes


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _example(rec: KeyframeRecord, hw: tuple[int, int], numbers: np.ndarray, jpegs: list[bytes]) -> dict:
    return {"video_id": rec.video_id, "timestamp": np.int32(rec.timestamp),
            "keyframe_index": np.int32(rec.source.keyframe_index), "frame_hw": np.asarray(hw, np.int32),
            "frame_numbers": np.asarray(numbers, np.int64), "jpegs": np.asarray(jpegs, dtype=object),
            "boxes": rec.boxes.astype(np.float32), "labels": rec.labels.astype(np.float32),
            "scores": rec.scores.astype(np.float32), "person_ids": rec.person_ids.astype(np.int32)}


def _write_shard(path: str, serialized: Sequence[bytes]) -> int:
    """Writes `path` atomically (a .tmp file renamed when closed); returns its size in bytes."""
    from array_record.python.array_record_module import ArrayRecordWriter  # noqa: PLC0415

    tmp = path + ".tmp"
    writer = ArrayRecordWriter(tmp, WRITER_OPTIONS)
    for record in serialized:
        writer.write(record)
    writer.close()
    os.replace(tmp, path)
    return os.path.getsize(path)


def _write_index(path: str, records: Sequence[KeyframeRecord], sizes: Sequence[tuple[int, int]]) -> None:
    counts = [r.num_boxes for r in records]
    k = records[0].labels.shape[1] if records else 0
    arrays = {
        "video_id": np.asarray([r.video_id for r in records], dtype=str),
        "timestamp": np.asarray([r.timestamp for r in records], np.int32),
        "keyframe_index": np.asarray([r.source.keyframe_index for r in records], np.int32),
        "num_frames": np.asarray([r.source.num_frames for r in records], np.int32),
        "frame_hw": np.asarray(sizes, np.int32).reshape(-1, 2),
        "box_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "boxes": np.concatenate([r.boxes for r in records]).reshape(-1, 4).astype(np.float32)
        if records else np.zeros([0, 4], np.float32),
        "labels": np.concatenate([r.labels for r in records]).reshape(-1, k).astype(np.float32)
        if records else np.zeros([0, 0], np.float32),
        "scores": np.concatenate([r.scores for r in records]).astype(np.float32) if records else np.zeros([0]),
        "person_ids": np.concatenate([r.person_ids for r in records]).astype(np.int32) if records else np.zeros([0]),
    }
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _write_json(path: str, value: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _write_tfds_metadata(directory: str, manifest: dict) -> None:
    """dataset_info.json / features.json for every split whose files are in `directory`."""
    import tensorflow_datasets as tfds  # noqa: PLC0415

    for name in os.listdir(directory):    # TFDS takes every shard in the folder: an unlisted split's would fail
        split = name.partition("-")[2].partition(".")[0]
        if name.startswith(packed_clips.DATASET_NAME + "-") and split not in manifest["splits"]:
            raise RuntimeError(f"{directory} holds shards of the {split} split, whose preparation was interrupted; "
                               f"finish it first ({packed_clips.PREPARE_COMMAND.format(split=split)})")
    split_infos = [tfds.core.SplitInfo(name=split, shard_lengths=list(entry["shard_lengths"]),
                                       num_bytes=int(entry["num_bytes"]), filename_template=None)
                   for split, entry in sorted(manifest["splits"].items())]
    tfds.folder_dataset.write_metadata(
        data_dir=directory, features=packed_clips.features(int(manifest["num_classes"])), split_infos=split_infos,
        check_data=False, description="ACAR-JAX packed clips: each keyframe's sampled JPEG frames, boxes and labels "
                                      f"(sampling {manifest['sampling']}).")


def prepare_split(data_config: ml_collections.ConfigDict, split: str, *, num_classes: int,
                  keyframes_per_shard: int = 256, log: Callable[[str], None] = print,
                  records: Sequence[KeyframeRecord] | None = None) -> dict:
    """Packs `split` into `config.data.tfds_dir` (resuming an interrupted run); returns its manifest entry.

    `records`: the split's keyframes (default: read from the files of `data_config`, frame folders included).
    """
    if split not in packed_clips.SPLITS:
        raise ValueError(f"split must be one of {packed_clips.SPLITS}, got {split!r}")
    if keyframes_per_shard < 1:
        raise ValueError(f"keyframes_per_shard must be >= 1, got {keyframes_per_shard}")
    directory = packed_clips.shards_dir(data_config)
    sampling, fields = packed_clips.config_fields(data_config, split)
    manifest = packed_clips.read_manifest(directory)
    if manifest is not None:
        packed_clips.check_sampling(manifest, data_config, directory)
        if int(manifest["num_classes"]) != num_classes:
            raise ValueError(f"the shards in {directory} have {manifest['num_classes']} classes, the config "
                             f"{num_classes} (config.model.num_classes); use another config.data.tfds_dir")
    else:
        manifest = {"format": packed_clips.FORMAT_VERSION, "sampling": sampling, "num_classes": num_classes,
                    "splits": {}}

    records = list(ava_files.load_keyframe_records(data_config, split) if records is None else records)
    numbers = [clip_frame_numbers(r, data_config) for r in records]      # refuses mp4 sources before writing
    for r in records:
        if r.labels.shape[1:] != (num_classes,):
            raise ValueError(f"keyframe {r.video_id},{r.timestamp}: labels of shape {r.labels.shape}, expected "
                             f"[n, {num_classes}] (config.model.num_classes)")
    num_shards = max(1, math.ceil(len(records) / keyframes_per_shard))
    plan = {"sampling": sampling, "fields": fields, "num_classes": num_classes, "num_shards": num_shards,
            "keyframes": hashlib.sha256(json.dumps(
                [(r.video_id, int(r.timestamp), r.num_boxes, r.source.num_frames) for r in records]).encode()
            ).hexdigest()}
    done = manifest["splits"].get(split)
    if done is not None:
        packed_clips.check_index_fields(done["fields"], data_config, directory, split)
        if done["plan"] != plan:
            raise packed_clips.ShardsConfigError(
                f"the {split} split in {directory} was prepared from other keyframes or with another shard size "
                f"than these (annotation files changed?); remove {directory} (or use another config.data.tfds_dir) "
                "to prepare it again")
        log(f"{split}: already prepared in {directory}")
        return done
    staging = os.path.join(directory, f"incomplete.{split}")
    plan_path = os.path.join(staging, "plan.json")
    resumable = False
    if os.path.isfile(plan_path):
        with open(plan_path) as f:
            resumable = json.load(f) == plan
    if not resumable:                         # start the split afresh: nothing of it in `directory` is complete
        shutil.rmtree(staging, ignore_errors=True)
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            if name.startswith(f"{packed_clips.DATASET_NAME}-{split}.") or name == packed_clips.index_name(split):
                os.remove(os.path.join(directory, name))
        os.makedirs(staging)
        _write_json(plan_path, plan)

    features = packed_clips.features(num_classes)
    sizes = _frame_sizes(records)
    shard_lengths = []
    with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
        for i in range(num_shards):
            lo, hi = i * keyframes_per_shard, min((i + 1) * keyframes_per_shard, len(records))
            shard_lengths.append(hi - lo)
            name = packed_clips.shard_name(split, i, num_shards)
            if any(os.path.isfile(os.path.join(d, name)) for d in (staging, directory)):
                continue                      # written by an earlier, interrupted run
            serialized = []
            for r in range(lo, hi):
                rec = records[r]
                paths = frame_index.frame_paths(rec.source.frames_dir, numbers[r])
                jpegs = list(pool.map(_read_bytes, paths))
                serialized.append(features.serialize_example(_example(rec, sizes[r], numbers[r], jpegs)))
            _write_shard(os.path.join(staging, name), serialized)
            log(f"{split}: shard {i + 1}/{num_shards} written ({hi} of {len(records)} keyframes)")
    index = packed_clips.index_name(split)
    if not os.path.isfile(os.path.join(directory, index)):
        _write_index(os.path.join(staging, index), records, sizes)

    for name in sorted(os.listdir(staging)):
        if name != "plan.json" and not name.endswith(".tmp"):     # .tmp: cut short by an earlier crash
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    names = [packed_clips.shard_name(split, i, num_shards) for i in range(num_shards)]
    entry = {"fields": fields, "plan": plan, "num_keyframes": len(records), "shard_lengths": shard_lengths,
             "num_bytes": sum(os.path.getsize(os.path.join(directory, n)) for n in names),
             "frames_per_keyframe": int(data_config.num_frames)}
    manifest["splits"][split] = entry
    _write_tfds_metadata(directory, manifest)
    _write_json(os.path.join(directory, packed_clips.MANIFEST), manifest)   # the commit point
    shutil.rmtree(staging)
    packed_clips.forget_readers()
    log(f"{split}: {len(records)} keyframes in {num_shards} shards, {entry['num_bytes'] / 1e6:.1f} MB, "
        f"in {directory}")
    return entry
