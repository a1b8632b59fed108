"""Multi-scale + flip test: box mapping between a test view and the original frame, and logit fusion.

A test view is a short side (256, 288, 320 in the paper) and a horizontal flip. Boxes are normalised
x1, y1, x2, y2 (design.md's one rule for box frames), so rescaling leaves them unchanged and only the flip
moves them: (x1, y1, x2, y2) -> (1 - x2, y1, 1 - x1, y2), the reference's `get_bbox_after_aug`. Mapping is
computed and returned in float64, where it is exact for float32 boxes (the batch contract) whose
coordinates are 0 or >= 2**-20: a box mapped to a view (and to its pixel frame) and back is bit-equal to the
original (1 - x then needs at most 43 bits, times a width below 2**10 at most 53). The model's float32 input
is the float32 rounding of the view box, as in the reference (`torch.FloatTensor(rois)`).
The CSV still takes the boxes as read (`orig_boxes` of the batch), as the reference writes
`label['bounding_box']`.

Fusion follows the reference's eval branch (`models/__init__.py`): per box, the logits of the views in which
the box survives are summed in view order and divided by their count; a box that survives no view is left
out. The caller then applies the prediction function (`losses.py`) to the fused logits: never average scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class View:
    """One test view: resize the short side to `short_side`, then flip horizontally if `flip`."""
    short_side: int
    flip: bool = False


def test_views(scales: Sequence[int], flip: bool) -> tuple[View, ...]:
    """The views of `config.data.eval_scales` x ({no flip} or {no flip, flip}), scale-major."""
    flips = (False, True) if flip else (False,)
    return tuple(View(int(s), f) for s in scales for f in flips)


test_views.__test__ = False   # not a pytest test despite its name


def to_view(boxes: np.ndarray, view: View) -> np.ndarray:
    """[..., 4] normalised x1y1x2y2 on the original frame -> the same boxes on `view`'s frame (float64)."""
    return _flip(boxes) if view.flip else _as_boxes(boxes)


def from_view(boxes: np.ndarray, view: View) -> np.ndarray:
    """Inverse of `to_view`: [..., 4] normalised boxes on `view`'s frame -> the original frame (float64)."""
    return _flip(boxes) if view.flip else _as_boxes(boxes)


def to_pixels(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """[..., 4] normalised boxes -> pixel coordinates on a frame of height, width `hw` (float64)."""
    h, w = hw
    return _as_boxes(boxes) * np.array([w, h, w, h], np.float64)


def from_pixels(boxes_px: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Inverse of `to_pixels`: pixel boxes on a frame of size `hw` -> normalised boxes (float64)."""
    h, w = hw
    return _as_boxes(boxes_px) / np.array([w, h, w, h], np.float64)


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.array(boxes, np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes: expected shape [..., 4] (x1, y1, x2, y2), got {b.shape}")
    return b


def _flip(boxes: np.ndarray) -> np.ndarray:
    x = _as_boxes(boxes)
    return np.stack([1.0 - x[..., 2], x[..., 1], 1.0 - x[..., 0], x[..., 3]], axis=-1)


def fuse_view_logits(logits: np.ndarray, survives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Averages each box's logits over the views in which it survives, as the reference.

    logits [V, N, K] per view (views in test order); survives [V, N] bool. Returns (fused [N, K] in the
    logits' dtype, zero where `kept` is False; kept [N] bool: the box survived at least one view). The sum
    runs over views in order and is divided by the count, the reference's float32 operations.
    """
    logits = np.asarray(logits)
    survives = np.asarray(survives, bool)
    if logits.ndim != 3 or survives.shape != logits.shape[:2]:
        raise ValueError(f"logits [V, N, K] and survives [V, N] expected, got {logits.shape} and "
                         f"{survives.shape}")
    total = np.zeros(logits.shape[1:], logits.dtype)
    for v in range(logits.shape[0]):   # sequential, in view order
        total = np.where(survives[v][:, None], total + logits[v], total)
    count = survives.sum(axis=0)
    kept = count > 0
    fused = np.where(kept[:, None], total / np.maximum(count, 1).astype(logits.dtype)[:, None], 0)
    return fused.astype(logits.dtype), kept


@dataclasses.dataclass(frozen=True)
class ViewOutputs:
    """One view's model outputs over the keyframes it covered (filler clips already removed).

    video_id [M] str; timestamp [M] int; orig_boxes [M, N, 4] boxes as read from the CSV; box_mask [M, N]
    (False for padding and for boxes the view dropped); logits [M, N, K].
    """
    video_id: np.ndarray
    timestamp: np.ndarray
    orig_boxes: np.ndarray
    box_mask: np.ndarray
    logits: np.ndarray


@dataclasses.dataclass(frozen=True)
class FusedBoxes:
    """One row per box that survived at least one view, keyframes in first-view order, boxes in slot order."""
    video_id: np.ndarray     # [R] object
    timestamp: np.ndarray    # [R] int64
    boxes: np.ndarray        # [R, 4] orig boxes
    logits: np.ndarray       # [R, K] fused logits (apply the prediction function next)


def fuse_views(views: Sequence[ViewOutputs]) -> FusedBoxes:
    """Aligns the views by (video_id, timestamp) and box slot, and fuses each box's logits over its views.

    Every view must cover the same keyframes with the same box slots (the same records); a view may order
    keyframes differently. A box's `orig_boxes` must agree across the views in which it survives. Raises
    ValueError naming the view and keyframe otherwise.
    """
    if not views:
        raise ValueError("fuse_views: no views")
    keys = _keys(views[0])
    where = {key: i for i, key in enumerate(keys)}
    if len(where) != len(keys):
        raise ValueError("fuse_views: view 0 has a keyframe twice")
    m, n, k = np.shape(views[0].logits)
    logits = np.zeros((len(views), m, n, k), np.asarray(views[0].logits).dtype)
    boxes = np.zeros((len(views), m, n, 4), np.asarray(views[0].orig_boxes).dtype)
    survives = np.zeros((len(views), m, n), bool)
    for v, out in enumerate(views):
        vkeys = _keys(out)
        if len(vkeys) != len(keys) or set(vkeys) != set(keys):
            extra = sorted(set(vkeys) ^ set(keys))[:1] or "a repeated keyframe"
            raise ValueError(f"fuse_views: view {v} does not cover the keyframes of view 0 ({extra})")
        if np.shape(out.logits) != (m, n, k) or np.shape(out.orig_boxes) != (m, n, 4):
            raise ValueError(f"fuse_views: view {v} has logits {np.shape(out.logits)} / orig_boxes "
                             f"{np.shape(out.orig_boxes)}, view 0 has {(m, n, k)} / {(m, n, 4)}")
        order = np.array([where[key] for key in vkeys], np.int64)
        logits[v, order] = out.logits
        boxes[v, order] = out.orig_boxes
        survives[v, order] = out.box_mask
    first_view = np.argmax(survives, axis=0)                                   # [m, n]
    chosen = np.take_along_axis(boxes, first_view[None, ..., None], axis=0)[0]  # [m, n, 4]
    clash = survives & np.any(boxes != chosen[None], axis=-1)
    if clash.any():
        v, i, j = (int(x[0]) for x in np.nonzero(clash))
        raise ValueError(f"fuse_views: view {v} has box slot {j} of keyframe {keys[i]} at {boxes[v, i, j]}, "
                         f"view {first_view[i, j]} at {chosen[i, j]}")
    fused, kept = fuse_view_logits(logits.reshape(len(views), m * n, k), survives.reshape(len(views), m * n))
    rows = np.flatnonzero(kept)
    frame = rows // n
    video_id = np.asarray([key[0] for key in keys] or [""], object)
    timestamp = np.asarray([key[1] for key in keys] or [0], np.int64)
    return FusedBoxes(video_id[frame], timestamp[frame], chosen.reshape(m * n, 4)[rows], fused[rows])


def _keys(out: ViewOutputs) -> list[tuple[str, int]]:
    return list(zip((str(v) for v in np.asarray(out.video_id).tolist()),
                    (int(t) for t in np.asarray(out.timestamp).tolist()), strict=True))
