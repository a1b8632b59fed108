"""Multi-scale + flip test views, and the fusion of a box's logits over the views in which it survives.

A test view is a short side (256, 288, 320 in the paper) and a horizontal flip. Boxes are normalised
x1, y1, x2, y2 to each clip's own frame (acar_jax/core/batch.py), so rescaling leaves them unchanged and the input
pipeline flips them with the clip; the result CSV takes the boxes as read from the CSV, as the reference writes
`label['bounding_box']`.

Fusion follows the reference's eval branch (`models/__init__.py`): per box, the logits of the views in which
the box survives are summed in view order and divided by their count; a box that survives no view is left
out. The caller then applies the prediction function (acar_jax/models/predictions.py) to the fused logits:
never average scores.
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


def multiview_test_plan(scales: Sequence[int], flip: bool) -> tuple[View, ...]:
    """The views of `config.data.eval_scales` x ({no flip} or {no flip, flip}), scale-major (the paper: 3 x 2)."""
    if not tuple(scales):
        raise ValueError("config.data.eval_scales is empty: give at least one test scale, e.g. (256,)")
    flips = (False, True) if flip else (False,)
    return tuple(View(int(s), f) for s in scales for f in flips)


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
