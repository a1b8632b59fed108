"""The batch contract between `data_pipelines/` and `acar_jax/`: keys, shapes, dtypes and the box-frame rule.

Every batch that reaches a model is a dict of arrays with a leading clip axis `B`:

  clips     [B, T, H, W, 3] float32  normalised as the config says, zero-padded bottom/right (0 after
                                     normalisation); T = config.data.num_frames (4T of the paper, stride 2)
  boxes     [B, N, 4]       float32  x1, y1, x2, y2 normalised to each clip's own UNPADDED (resized, flipped) frame
  box_mask  [B, N]          bool     True for real boxes; padded boxes are all-zero and False
  valid_hw  [B, 2]          int32    unpadded height, width in pixels (<= H, W)
  labels    [B, N, K]       float32  multi-hot targets over the K classes of the label map (train, and eval on GT)

Evaluation batches also carry host-side metadata (never sent to a device):

  video_id    [B]       object (str)   clip's video id; "" for filler clips
  timestamp   [B]       int32          keyframe timestamp in seconds
  orig_boxes  [B, N, 4] float32        boxes as read from the CSV (original normalised frame, no flip)
  clip_mask   [B]       bool           False for filler clips that pad the last batch to a fixed size

The one rule for box frames: the pipeline never divides by a pad ratio; the model maps boxes onto the padded
feature map with `boxes_to_feature_rois` (the reference divides normalised boxes by pad_ratio = padded / valid,
then multiplies by the feature size, which is the same product).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

MODEL_INPUT_KEYS = ("clips", "boxes", "box_mask", "valid_hw")
TRAIN_KEYS = MODEL_INPUT_KEYS + ("labels",)
EVAL_METADATA_KEYS = ("video_id", "timestamp", "orig_boxes", "clip_mask")


def boxes_to_feature_rois(boxes: jnp.ndarray, valid_hw: jnp.ndarray, padded_hw: tuple[int, int],
                          feature_hw: tuple[int, int]) -> jnp.ndarray:
    """Maps normalised boxes on the unpadded frame to feature-map pixel coordinates of the padded map.

    boxes [B, N, 4] x1y1x2y2 in [0, 1] of the unpadded frame; valid_hw [B, 2] pixels; padded_hw the clip
    size (H, W); feature_hw the feature map size (h, w). Returns [B, N, 4] in feature pixels:
    x * (valid_w / W) * w, as the reference's `box / pad_ratio * w`.
    """
    padded = jnp.asarray(padded_hw, jnp.float32)
    feat = jnp.asarray(feature_hw, jnp.float32)
    scale_hw = valid_hw.astype(jnp.float32) / padded * feat  # [B, 2] (h, w)
    scale_xyxy = jnp.stack([scale_hw[:, 1], scale_hw[:, 0], scale_hw[:, 1], scale_hw[:, 0]], axis=-1)
    return boxes * scale_xyxy[:, None, :]


def effective_feature_hw(valid_hw: jnp.ndarray, padded_hw: tuple[int, int],
                         feature_hw: tuple[int, int]) -> jnp.ndarray:
    """The part of the feature map that covers the unpadded frame: ceil(feature * valid / padded), [B, 2] int32.

    The reference computes `ceil(h * (1 / pad_ratio))` in float64; this is the exact integer form of it.
    """
    valid = valid_hw.astype(jnp.int32)
    padded = jnp.asarray(padded_hw, jnp.int32)
    feat = jnp.asarray(feature_hw, jnp.int32)
    return (feat * valid + padded - 1) // padded


def check_model_inputs(clips, boxes, box_mask, valid_hw) -> None:
    """Raises ValueError naming the argument when a model input has the wrong rank, shape or dtype."""
    _check(clips, "clips", 5, "[B, T, H, W, 3]", np.floating, last_dim=3)
    b = clips.shape[0]
    _check(boxes, "boxes", 3, "[B, N, 4]", np.floating, last_dim=4, batch=b)
    n = boxes.shape[1]
    _check(box_mask, "box_mask", 2, "[B, N]", np.bool_, batch=b)
    if box_mask.shape[1] != n:
        raise ValueError(f"box_mask: expected shape [B, N] = [{b}, {n}] to match boxes, got {tuple(box_mask.shape)}")
    _check(valid_hw, "valid_hw", 2, "[B, 2]", np.integer, last_dim=2, batch=b)


def check_batch_keys(batch: Mapping, keys: tuple[str, ...]) -> None:
    """Raises KeyError naming the missing batch keys."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"batch is missing key(s) {missing}; it has {sorted(batch)}")


_KIND_NAMES = {np.floating: "a float", np.integer: "an integer", np.bool_: "a bool"}


def _check(x, name: str, rank: int, expected: str, kind, *, last_dim: int | None = None,
           batch: int | None = None) -> None:
    shape = tuple(getattr(x, "shape", ()))
    dtype = getattr(x, "dtype", None)
    if len(shape) != rank:
        raise ValueError(f"{name}: expected rank {rank} {expected}, got shape {shape}")
    if last_dim is not None and shape[-1] != last_dim:
        raise ValueError(f"{name}: expected shape {expected} (last dim {last_dim}), got {shape}")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"{name}: expected shape {expected} with B={batch} (from clips), got {shape}")
    if dtype is None or not np.issubdtype(np.dtype(dtype), kind):
        raise ValueError(f"{name}: expected {_KIND_NAMES[kind]} dtype for {expected}, got {dtype}")
