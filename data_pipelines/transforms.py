"""Clip and box transforms as tf ops: resize short side, flip, normalise, pad, box jitter (box-consistent).

Resizing is PIL's BILINEAR on the uint8 frames, the reference's `Scale` itself (in a numpy_function; Pillow
releases the GIL while it resamples): with TF's INTEGER_ACCURATE JPEG decode the pixels are the reference's
exactly, and on 2 cores it is faster than TF's antialiased resize (which differs by up to 1 level).
Boxes are normalised x1, y1, x2, y2. Every transform keeps them normalised to the clip's unpadded frame
(docs/design.md, the box-frame rule), so padding never touches boxes and resizing never changes them.
The box law is the reference's (models/necks/utils.py): `bbox_jitter` with one copy, then
`get_bbox_after_aug` with `aug_threshold` 0 (clamp to the image, drop a box with nothing left, flip).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image


def resized_hw(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The reference's `Scale(short_side)` output size: short side to `short_side`, long side int-truncated.

    A frame whose short side already equals `short_side` is kept as is; a square frame takes the `h <= w`
    branch, as in the reference.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got height={height}, width={width}")
    if (width <= height and width == short_side) or (height <= width and height == short_side):
        return height, width
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def scale_frames(frames: np.ndarray, out_hw) -> np.ndarray:
    """[T, H, W, 3] uint8 -> [T, h, w, 3] uint8 with PIL BILINEAR: the reference's `Scale` on each frame
    (a no-op when the frames already have the size)."""
    h, w = int(out_hw[0]), int(out_hw[1])
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def resize_clip(frames: tf.Tensor, out_hw: tf.Tensor) -> tf.Tensor:
    """[T, H, W, 3] uint8 -> [T, h, w, 3] uint8: `scale_frames` as a tf op (skipped, with its Python call,
    when the frames already have the size)."""
    def resize():
        resized = tf.numpy_function(scale_frames, [frames, out_hw], tf.uint8, stateful=False)
        return tf.ensure_shape(resized, [frames.shape[0], None, None, 3])

    same = tf.reduce_all(tf.equal(tf.shape(frames)[1:3], out_hw))
    return tf.cond(same, lambda: frames, resize)


def flip_clip(frames: tf.Tensor) -> tf.Tensor:
    """Horizontal flip of [T, H, W, C]."""
    return tf.reverse(frames, axis=[2])


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """[n, 4] normalised x1y1x2y2 -> the boxes in the horizontally flipped frame: (1 - x2, y1, 1 - x1, y2)."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([1.0 - x2, y1, 1.0 - x1, y2], axis=-1)


def normalize_clip(frames: tf.Tensor, pixel_scale: float, mean, std) -> tf.Tensor:
    """(x / pixel_scale - mean) / std per channel in float32, as the reference's ToTensor(norm_value) +
    Normalize (uint8 frames are cast first)."""
    frames = tf.cast(frames, tf.float32)
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (frames / pixel_scale - mean) / std


def pad_clip(frames: tf.Tensor, padded_hw: tf.Tensor) -> tf.Tensor:
    """Zero-pads [T, h, w, C] bottom/right to [T, H, W, C]; run after normalisation so padding stays 0."""
    hw = tf.shape(frames)[1:3]
    tf.debugging.assert_less_equal(hw, padded_hw, message="clip is larger than its spatial bucket")
    pad = padded_hw - hw
    return tf.cond(tf.reduce_any(pad > 0),
                   lambda: tf.pad(frames, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]]), lambda: frames)


def jitter_boxes(boxes: tf.Tensor, uniform: tf.Tensor, scale: float) -> tf.Tensor:
    """The reference's `bbox_jitter(bbox, num=1, delta=scale)` given its U(0, 1) draws `uniform [n, 4]`.

    Each coordinate moves by U(-scale, scale) times the box width (x) or height (y); then x1, x2 are clamped
    below at 0 and y1, y2 above at 1, exactly as written in the reference.
    """
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    w, h = x2 - x1, y2 - y1
    j = (2.0 * uniform - 1.0) * scale
    return tf.stack([tf.maximum(x1 + j[:, 0] * w, 0.0), tf.minimum(y1 + j[:, 1] * h, 1.0),
                     tf.maximum(x2 + j[:, 2] * w, 0.0), tf.minimum(y2 + j[:, 3] * h, 1.0)], axis=-1)


def clamp_boxes(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The reference's `get_bbox_after_aug` crop step for the full image with `aug_threshold` 0.

    Returns (boxes clamped to [0, 1], keep [n] bool): a box is dropped when its clamped area is not positive.
    """
    clamped = tf.clip_by_value(boxes, 0.0, 1.0)
    x1, y1, x2, y2 = tf.unstack(clamped, axis=-1)
    keep = (y2 - y1) * (x2 - x1) > 0.0
    return clamped, keep


def example_keys(key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits one example's stateless key [2] int64 into (flip key, jitter key)."""
    keys = tf.random.experimental.stateless_split(key, num=2)
    return keys[0], keys[1]


def augment_boxes(boxes: tf.Tensor, key: tf.Tensor, *, hflip: bool, jitter: float
                  ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Training box law: jitter, clamp + drop, flip, all drawn from the stateless `key` [2] int64.

    Returns (boxes [n, 4] in the (flipped) frame, keep [n] bool, flip scalar bool). The same key always draws
    the same flip and jitter, so a resumed run redraws exactly what an uninterrupted one drew.
    """
    flip_key, jitter_key = example_keys(key)
    flip = tf.logical_and(tf.constant(hflip), tf.random.stateless_uniform([], flip_key) < 0.5)
    if jitter > 0:
        uniform = tf.random.stateless_uniform(tf.shape(boxes), jitter_key, dtype=tf.float32)
        boxes = jitter_boxes(boxes, uniform, jitter)
    boxes, keep = clamp_boxes(boxes)
    boxes = tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes)
    return boxes, keep, flip
