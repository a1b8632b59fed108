"""Bank extraction: a trained ACAR model over every keyframe of a split, each actor's first-order map saved.

  records of the split (boxes from `bank.boxes`: ground truth, or a detections CSV in the AVA proposal format)
  -> per video, the eval input pipeline at the bank's scale, unflipped (every keyframe once, fixed batches)
  -> maps_fn -> each real actor's map cropped to its clip's grid -> data_pipelines.bank_files (one file per
     video, renamed into place when whole; the manifest says complete when every video is written).
Videos are split over hosts (video i goes to process i % count); each host shards its batches over its own
devices, so no host waits on another until the end. A video's batches depend only on that video, so a resumed
run writes exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from data_pipelines import ava_files, bank_files, clips
from data_pipelines.records import KeyframeRecord

MapsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def bank_records(data_config: ml_collections.ConfigDict, split: str, boxes: str) -> list[KeyframeRecord]:
    """The keyframes of `split` with the bank's boxes: "gt" (the split's ground-truth CSV) or the path of a
    detections CSV in the AVA proposal format (video,timestamp,x1,y1,x2,y2,action,score; kept at >=
    data.val_proposal_threshold). With a CSV, every second between a video's first and last row must have
    boxes: the bank feeds windows of consecutive seconds."""
    data = ml_collections.ConfigDict(data_config.to_dict())
    data.exclusions = ""                          # the bank covers every keyframe
    if boxes == "gt":
        data.train_proposals, data.val_proposals = "", ""
        return ava_files.load_keyframe_records(data, split)
    path = ava_files.resolve_path(data.root, boxes)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"bank.boxes: {path}: no such detections CSV (or use 'gt')")
    data.val_proposals = path
    records = ava_files.load_keyframe_records(data, "val")
    seconds: dict[str, set[int]] = collections.defaultdict(set)
    for r in records:
        seconds[r.video_id].add(int(r.timestamp))
    for video, have in sorted(seconds.items()):
        missing = sorted(set(range(min(have), max(have) + 1)) - have)
        if missing:
            raise ValueError(f"{path}: video {video!r} has no boxes at seconds {missing[:20]}"
                             f"{' ...' if len(missing) > 20 else ''}; the bank needs every second")
    return records


def entry_counts(records: Sequence[KeyframeRecord]) -> dict[str, dict[int, int]]:
    """video -> timestamp -> the number of entries extraction writes for that keyframe: its boxes whose area
    clamped to the image is positive (the eval pipeline's rule, transforms.clamp_boxes, in float32)."""
    out: dict[str, dict[int, int]] = collections.defaultdict(dict)
    for r in records:
        b = np.clip(np.asarray(r.boxes, np.float32).reshape(-1, 4), np.float32(0), np.float32(1))
        area = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
        out[r.video_id][int(r.timestamp)] = int((area > 0).sum())
    return dict(out)


# How the model runs, not what it computes: not in a fingerprint.
RUNTIME_MODEL_FIELDS = ("remat", "conv3d", "conv_kernel_grad")


def fingerprint(model_config: ml_collections.ConfigDict, params_digest: str, split: str, boxes: str,
                scale: int, content: str = "maps") -> str:
    """What identifies a bank: the model (config and weights), the split, the boxes, the scale and what is
    stored (bank.content: "maps" or "actors")."""
    model = {k: v for k, v in model_config.to_dict().items() if k not in RUNTIME_MODEL_FIELDS}
    payload = {"model": model, "params": params_digest, "split": split, "boxes": boxes, "scale": int(scale)}
    if content != "maps":
        payload["content"] = content
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def extract_video(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, maps_fn: MapsFn, *,
                  batch_size: int, scale: int) -> list[bank_files.Entry]:
    """Every keyframe of one video through maps_fn: one Entry per keyframe with its surviving actors' maps."""
    by_key = {(r.video_id, int(r.timestamp)): r for r in records}
    entries = []
    for batch in clips.eval_batches(records, data_config, batch_size=batch_size, scale=scale, flip=False):
        maps, eff = maps_fn(batch["clips"], batch["boxes"], batch["valid_hw"])
        maps, eff = np.asarray(maps), np.asarray(eff)
        for c in np.flatnonzero(np.asarray(batch["clip_mask"], bool)):
            rec = by_key[(str(batch["video_id"][c]), int(batch["timestamp"][c]))]
            keep = np.flatnonzero(np.asarray(batch["box_mask"][c], bool)[:rec.num_boxes])
            eh, ew = (int(v) for v in eff[c])
            entries.append(bank_files.Entry(int(rec.timestamp), rec.boxes[keep].astype(np.float32),
                                            maps[c, keep, :eh, :ew]))
    return entries


def extract_bank(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, maps_fn: MapsFn,
                 root: str, *, fingerprint: str, split: str, dtype: str, batch_size: int, scale: int,
                 process_index: int = 0, process_count: int = 1,
                 after_video: Callable[[str], None] | None = None) -> list[str]:
    """Writes this process's videos that are not written yet; returns the videos it wrote."""
    by_video: dict[str, list[KeyframeRecord]] = collections.defaultdict(list)
    for r in records:
        by_video[r.video_id].append(r)
    videos = sorted(by_video)
    if not videos:
        raise ValueError(f"bank split {split!r}: no keyframes to extract under {data_config.root}")
    bank_files.start_bank(root, fingerprint=fingerprint, split=split, dtype=dtype, videos=videos)
    done = bank_files.finished_videos(root)
    mine = [v for i, v in enumerate(videos) if i % process_count == process_index and v not in done]
    logging.info("bank %s: %d videos, %d already written, %d to extract on process %d", root, len(videos),
                 len(done & set(videos)), len(mine), process_index)
    written = []
    for video in tqdm(mine, desc=f"bank {split}", unit="video", disable=process_index > 0):
        entries = extract_video(by_video[video], data_config, maps_fn, batch_size=batch_size, scale=scale)
        bank_files.write_video(root, video, entries, dtype)
        written.append(video)
        if after_video is not None:
            after_video(video)
    return written
