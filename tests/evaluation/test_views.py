"""acar_jax.evaluation.views: the test-view plan, and logit fusion as the reference's eval branch.

Fusion oracle: the reference's loop (`models/__init__.py`, eval branch) replayed with torch float32 tensors:
per box, `output = outputs[view]` on its first surviving view, `+=` on later ones, then `/ float(count)`.
"""

from __future__ import annotations

import numpy as np
import pytest

from acar_jax.evaluation import views
from acar_jax.evaluation.views import View


def test_multiview_test_plan_is_scale_major():
    assert views.multiview_test_plan((256,), flip=False) == (View(256, False),)
    plan = views.multiview_test_plan((256, 288), flip=True)
    assert plan == (View(256, False), View(256, True), View(288, False), View(288, True))
    with pytest.raises(ValueError, match="eval_scales is empty"):
        views.multiview_test_plan((), flip=False)


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
    fused, kept = views.fuse_view_logits(logits, survives)
    np.testing.assert_array_equal(fused, [[3.0, 30.0], [3.0, 30.0]])      # box 1: (2 + 4) / 2, view 1 ignored
    assert kept.all()
    fused, kept = views.fuse_view_logits(logits, np.array([[True, False]] * 3))
    np.testing.assert_array_equal(kept, [True, False])                     # box 1 survives no view: left out
    np.testing.assert_array_equal(fused[1], [0.0, 0.0])


def test_fusion_equals_the_reference_loop_bit_exactly():
    import torch  # noqa: F401, PLC0415
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 50, 60)) * 5).astype(np.float32)
    survives = rng.random((6, 50)) < 0.7
    survives[:, 3] = False
    fused, kept = views.fuse_view_logits(logits, survives)
    want, want_kept = _reference_fusion(logits, survives)
    np.testing.assert_array_equal(kept, want_kept)
    np.testing.assert_array_equal(fused[kept], want)
