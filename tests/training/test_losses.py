"""Losses and prediction function vs the reference's torch code (losses.py), to 1e-6.

Reference: `F.binary_cross_entropy(ava_pose_softmax_func(logits), targets)` (pose_softmax) and
`nn.BCEWithLogitsLoss()` otherwise, both means over the real RoIs x classes; ours: sum of per-RoI losses over
real RoIs / their count.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812

from acar_jax.models.predictions import predict_scores  # noqa: E402
from acar_jax.training import losses  # noqa: E402

B, N, K, POSE = 3, 5, 60, 13


def torch_pose_softmax(logits: torch.Tensor, pose: int = POSE) -> torch.Tensor:
    """The reference's ava_pose_softmax_func."""
    out = torch.cat([torch.softmax(logits[:, :pose], 1), torch.sigmoid(logits[:, pose:])], 1)
    return torch.clamp(out, 0.0, 1.0)


def make(seed: int = 0, scale: float = 3.0):
    rng = np.random.RandomState(seed)
    logits = (scale * rng.randn(B, N, K)).astype(np.float32)
    labels = (rng.rand(B, N, K) < 0.2).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    return logits, labels, mask


@functools.partial(jax.jit, static_argnums=3)
def mean_loss(logits, labels, mask, pose_softmax):
    per = losses.roi_losses(logits, labels, mask, pose_softmax=pose_softmax, num_pose_classes=POSE)
    return jnp.sum(per) / jnp.sum(mask)   # padded RoIs are 0 in `per`: the mean over real RoIs


loss_and_grad = jax.jit(jax.value_and_grad(mean_loss), static_argnums=3)


def torch_loss(logits, labels, mask, pose_softmax):
    x = torch.from_numpy(logits[mask]).requires_grad_(True)
    y = torch.from_numpy(labels[mask])
    if pose_softmax:
        loss = F.binary_cross_entropy(torch_pose_softmax(x), y)
    else:
        loss = F.binary_cross_entropy_with_logits(x, y)
    loss.backward()
    return float(loss.detach()), x.grad.numpy()


@pytest.mark.parametrize("pose_softmax", [True, False])
@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
def test_loss_and_gradient_equal_reference(pose_softmax, scale):
    """Away from float32 saturation (|logits| <~ 10: torch's 1 - sigmoid(x) loses digits beyond that, ours is
    exact), value and gradient equal the reference to 1e-6."""
    logits, labels, mask = make(scale=scale)
    want, want_grad = torch_loss(logits, labels, mask, pose_softmax)
    value, grad = loss_and_grad(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask),
                                                pose_softmax)
    grad = np.asarray(grad)
    print(f"pose_softmax={pose_softmax} scale={scale}: loss {float(value):.7f} torch {want:.7f} "
          f"abs err {abs(float(value) - want):.1e}; grad max abs err {np.abs(grad[mask] - want_grad).max():.1e}")
    assert abs(float(value) - want) < 1e-6
    np.testing.assert_allclose(grad[mask], want_grad, atol=1e-6)
    assert np.all(grad[~mask] == 0.0)


@pytest.mark.parametrize("pose_softmax", [True, False])
def test_masked_boxes_change_nothing(pose_softmax):
    """Padded slots with any logits (even inf / nan) and labels: same loss, zero and finite gradients."""
    logits, labels, mask = make()
    base = mean_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask), pose_softmax)
    logits2, labels2 = logits.copy(), labels.copy()
    logits2[~mask] = np.nan
    logits2[2, 0, :4] = np.inf
    labels2[~mask] = 1.0
    value, grad = loss_and_grad(jnp.asarray(logits2), jnp.asarray(labels2), jnp.asarray(mask),
                                                pose_softmax)
    assert float(value) == float(base)
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad)[~mask] == 0.0)
    per = losses.roi_losses(jnp.asarray(logits2), jnp.asarray(labels2), jnp.asarray(mask),
                            pose_softmax=pose_softmax, num_pose_classes=POSE)
    assert np.all(np.asarray(per)[~mask] == 0.0)


def test_saturated_logits_stay_finite():
    """Far beyond float32 saturation the loss is the clamped reference value (-100 per log), gradients finite."""
    logits = np.zeros((1, 1, K), np.float32)
    logits[..., 0] = 200.0   # pose softmax p_0 = 1 exactly in float32
    logits[..., 20] = -200.0
    labels = np.zeros((1, 1, K), np.float32)
    labels[..., 1] = 1.0     # a pose class with p = 0: log clamped at -100 as torch
    mask = np.ones((1, 1), bool)
    want, _ = torch_loss(logits, labels, mask, True)
    value, grad = loss_and_grad(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask), True)
    assert abs(float(value) - want) < 1e-5
    assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("pose_softmax", [True, False])
def test_predict_scores_equal_reference(pose_softmax):
    logits, _, _ = make()
    got = np.asarray(predict_scores(jnp.asarray(logits), pose_softmax=pose_softmax, num_pose_classes=POSE))
    x = torch.from_numpy(logits.reshape(-1, K))
    want = (torch_pose_softmax(x) if pose_softmax else torch.sigmoid(x)).numpy().reshape(got.shape)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_bad_inputs_rejected_by_name():
    logits, labels, mask = make()
    call = lambda lg, lb, m: losses.roi_losses(lg, lb, m, pose_softmax=True)  # noqa: E731
    with pytest.raises(ValueError, match="logits"):
        call(logits[0], labels, mask)
    with pytest.raises(ValueError, match="logits"):
        call(logits.astype(np.int32), labels, mask)
    with pytest.raises(ValueError, match="labels"):
        call(logits, labels[..., :5], mask)
    with pytest.raises(ValueError, match="labels"):
        call(logits, labels.astype(np.int32), mask)
    with pytest.raises(ValueError, match="box_mask"):
        call(logits, labels, mask[:, :2])
    with pytest.raises(ValueError, match="box_mask"):
        call(logits, labels, mask.astype(np.float32))
    with pytest.raises(ValueError, match="num_pose_classes"):
        losses.roi_losses(logits, labels, mask, pose_softmax=True, num_pose_classes=61)
    with pytest.raises(ValueError, match="logits"):
        predict_scores(np.zeros((2, 3), np.int32), pose_softmax=False)
