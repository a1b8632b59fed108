"""acar_jax.multiview: exact box mapping for flip / rescale, and logit fusion as the reference's eval branch.

Fusion oracle: the reference's loop (`models/__init__.py`, eval branch) replayed with torch float32 tensors:
per box, `output = outputs[view]` on its first surviving view, `+=` on later ones, then `/ float(count)`.
"""

from __future__ import annotations

import numpy as np
import pytest

from acar_jax import multiview
from acar_jax.multiview import View, ViewOutputs

# Resized sizes of a 340 x 453 AVA frame (the reference's Scale: long side int-truncated) at the three scales.
SIZES = {256: (256, 341), 288: (288, 383), 320: (320, 426)}


def _boxes(rng, n):
    xy = rng.random((n, 2), dtype=np.float32) * 0.7
    wh = rng.random((n, 2), dtype=np.float32) * 0.3
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    boxes[0] = [0.0, 0.0, 1.0, 1.0]
    boxes[1] = [2.0**-20, 0.1, 0.3, 0.999]   # the smallest coordinate the exactness claim covers
    return boxes


@pytest.mark.parametrize("view", multiview.test_views((256, 288, 320), flip=True))
def test_view_mapping_round_trips_bit_exactly(view):
    boxes = _boxes(np.random.default_rng(view.short_side + view.flip), 2000)
    in_view = multiview.to_view(boxes, view)
    if view.flip:
        np.testing.assert_array_equal(in_view[0], [0.0, 0.0, 1.0, 1.0])
        np.testing.assert_array_equal(in_view[:, [0, 2]], 1.0 - boxes[:, [2, 0]].astype(np.float64))
        np.testing.assert_array_equal(in_view[:, [1, 3]], boxes[:, [1, 3]])
    else:
        np.testing.assert_array_equal(in_view, boxes)    # rescaling leaves normalised boxes unchanged
    back = multiview.from_view(in_view, view)
    np.testing.assert_array_equal(back, boxes)           # bit-exact, already in float64
    assert np.array_equal(back.astype(np.float32), boxes)
    # Through the view's pixel frame (the resized, possibly flipped frame) and back, too.
    hw = SIZES[view.short_side]
    px = multiview.to_pixels(in_view, hw)
    np.testing.assert_array_equal(multiview.from_view(multiview.from_pixels(px, hw), view), boxes)


def test_flip_law_matches_the_reference_get_bbox_after_aug():
    # Reference: ret = [1. - ret[2], ret[1], 1. - ret[0], ret[3]] in float64 on the original box.
    box = np.array([0.25, 0.125, 0.75, 0.5])
    np.testing.assert_array_equal(multiview.to_view(box, View(256, True)), [0.25, 0.125, 0.75, 0.5])
    box = np.array([0.1, 0.2, 0.4, 0.9])
    np.testing.assert_array_equal(multiview.to_view(box, View(288, True)), [1 - 0.4, 0.2, 1 - 0.1, 0.9])


def test_views_from_config_fields():
    assert multiview.test_views((256,), flip=False) == (View(256, False),)
    views = multiview.test_views((256, 288), flip=True)
    assert views == (View(256, False), View(256, True), View(288, False), View(288, True))


def _reference_fusion(logits, survives):
    """The reference's eval-branch accumulation with torch float32 tensors."""
    import torch
    v, n, _ = logits.shape
    output_list, cnt_list = [None] * n, [0] * n
    for no in range(v):
        outputs = torch.from_numpy(logits[no])
        for idx in range(n):
            if not survives[no, idx]:
                continue
            if cnt_list[idx] == 0:
                output_list[idx] = outputs[idx].clone()
            else:
                output_list[idx] += outputs[idx]
            cnt_list[idx] += 1
    kept = np.array([c > 0 for c in cnt_list])
    fused = [output_list[i] / float(cnt_list[i]) for i in range(n) if cnt_list[i]]
    return (torch.stack(fused).numpy() if fused else np.zeros((0, logits.shape[2]), np.float32)), kept


def test_box_absent_from_a_view_is_averaged_over_the_views_that_have_it():
    logits = np.array([[[1.0, 10.0], [2.0, 20.0]],
                       [[3.0, 30.0], [100.0, 100.0]],
                       [[5.0, 50.0], [4.0, 40.0]]], np.float32)           # [V=3, N=2, K=2]
    survives = np.array([[True, True], [True, False], [True, True]])
    fused, kept = multiview.fuse_view_logits(logits, survives)
    np.testing.assert_array_equal(fused, [[3.0, 30.0], [3.0, 30.0]])      # box 1: (2 + 4) / 2, view 1 ignored
    assert kept.all()
    fused, kept = multiview.fuse_view_logits(logits, np.array([[True, False]] * 3))
    np.testing.assert_array_equal(kept, [True, False])                     # box 1 survives no view: left out
    np.testing.assert_array_equal(fused[1], [0.0, 0.0])


def test_fusion_equals_the_reference_loop_bit_exactly():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 50, 60)) * 5).astype(np.float32)
    survives = rng.random((6, 50)) < 0.7
    survives[:, 3] = False
    fused, kept = multiview.fuse_view_logits(logits, survives)
    want, want_kept = _reference_fusion(logits, survives)
    np.testing.assert_array_equal(kept, want_kept)
    np.testing.assert_array_equal(fused[kept], want)


def test_fuse_views_aligns_keyframes_and_slots_across_views():
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.9]],
                      [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]], np.float32)   # keyframe 2 has one box
    mask = np.array([[True, True], [True, False]])
    k = 3
    view0 = ViewOutputs(np.array(["a", "b"]), np.array([902, 903]), boxes, mask,
                        np.arange(2 * 2 * k, dtype=np.float32).reshape(2, 2, k))
    # View 1 lists the keyframes in the other order and drops box 1 of keyframe "a".
    mask1 = np.array([[True, False], [True, False]])
    view1 = ViewOutputs(np.array(["b", "a"]), np.array([903, 902]), boxes[::-1], mask1,
                        100 + np.arange(2 * 2 * k, dtype=np.float32).reshape(2, 2, k))
    out = multiview.fuse_views([view0, view1])
    assert list(out.video_id) == ["a", "a", "b"] and list(out.timestamp) == [902, 902, 903]
    np.testing.assert_array_equal(out.boxes, [boxes[0, 0], boxes[0, 1], boxes[1, 0]])
    l0, l1 = view0.logits, view1.logits
    np.testing.assert_array_equal(out.logits[0], (l0[0, 0] + l1[1, 0]) / 2)
    np.testing.assert_array_equal(out.logits[1], l0[0, 1])                 # only view 0 has it
    np.testing.assert_array_equal(out.logits[2], (l0[1, 0] + l1[0, 0]) / 2)


def test_fuse_views_rejects_misaligned_views():
    boxes = np.zeros((1, 1, 4), np.float32) + [0.1, 0.1, 0.5, 0.5]
    view0 = ViewOutputs(np.array(["a"]), np.array([902]), boxes, np.ones((1, 1), bool), np.zeros((1, 1, 2)))
    other = ViewOutputs(np.array(["a"]), np.array([903]), boxes, np.ones((1, 1), bool), np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="view 1 does not cover the keyframes"):
        multiview.fuse_views([view0, other])
    moved = ViewOutputs(np.array(["a"]), np.array([902]), boxes + 0.1, np.ones((1, 1), bool),
                        np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match=r"view 1 has box slot 0 of keyframe \('a', 902\)"):
        multiview.fuse_views([view0, moved])
