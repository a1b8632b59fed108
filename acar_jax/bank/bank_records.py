"""What a bank holds and what identifies it: the keyframes and boxes it is extracted on, the entries each
keyframe gets, and the fingerprint of (model, weights, split, boxes, scale, content)."""

from __future__ import annotations

import collections
import hashlib
import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from data_pipelines import ava_files
from data_pipelines.records import KeyframeRecord


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
