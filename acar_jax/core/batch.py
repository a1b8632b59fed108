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
  flip        [B]       bool           the clip was flipped horizontally (training: random; eval: the view's)

Training batches carry video_id, timestamp, clip_mask and flip too, so that a feature-bank head's window can be
looked up for every clip (data_pipelines/bank_windows.py). Heads that read a bank (ACFB) also get, per clip:

  bank        [B, M, h, w, D]  float  the window's bank maps on the batch's bank grid (docs/acfb.md)
  bank_mask   [B, M]           bool   True for the window's real entries

The one rule for box frames: the pipeline never divides by a pad ratio; the model maps boxes onto the padded
feature map (`acar_jax.models.boxes`; the reference divides normalised boxes by pad_ratio = padded / valid,
then multiplies by the feature size, which is the same product). docs/design.md explains why.

`check_array` is the project's one input-checking helper: every public boundary names the argument, the expected
shape and what it found.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

MODEL_INPUT_KEYS = ("clips", "boxes", "box_mask", "valid_hw")
TRAIN_KEYS = MODEL_INPUT_KEYS + ("labels",)
EVAL_METADATA_KEYS = ("video_id", "timestamp", "orig_boxes", "clip_mask", "flip")
BANK_KEYS = ("bank", "bank_mask")


def check_model_inputs(clips, boxes, box_mask, valid_hw) -> None:
    """Raises ValueError naming the argument when a model input has the wrong rank, shape or dtype."""
    check_array(clips, "clips", "[B, T, H, W, 3]", (None, None, None, None, 3), np.floating)
    b = clips.shape[0]
    check_array(boxes, "boxes", "[B, N, 4]", (b, None, 4), np.floating)
    check_array(box_mask, "box_mask", "[B, N]", (b, boxes.shape[1]), np.bool_)
    check_array(valid_hw, "valid_hw", "[B, 2]", (b, 2), np.integer)


_KIND_NAMES = {np.floating: "a float", np.integer: "an integer", np.bool_: "a bool"}


def check_array(x, name: str, layout: str, shape: tuple[int | None, ...], kind) -> None:
    """Raises ValueError unless `x` has rank len(shape), the given sizes (None: any) and a dtype of `kind`
    (np.floating, np.integer or np.bool_). `layout` names the axes in the message, e.g. "[B, N, 4]"."""
    found = tuple(getattr(x, "shape", ()))
    dtype = getattr(x, "dtype", None)
    if len(found) != len(shape):
        raise ValueError(f"{name}: expected rank {len(shape)} {layout}, got shape {found}")
    if any(want is not None and got != want for got, want in zip(found, shape, strict=True)):
        wanted = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
        raise ValueError(f"{name}: expected shape {layout} = {wanted}, got {found}")
    if dtype is None or not jnp.issubdtype(dtype, kind):   # jnp knows bfloat16 is a float
        raise ValueError(f"{name}: expected {_KIND_NAMES[kind]} dtype for {layout}, got {dtype}")
