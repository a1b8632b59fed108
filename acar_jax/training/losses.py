"""Per-RoI losses (the reference's `losses.py`) in log space: the binary cross-entropy of the prediction
function's probabilities (acar_jax/models/predictions.py).

`pose_softmax=True`: the first `num_pose_classes` logits (AVA's mutually exclusive pose classes) go through a
softmax, the rest through a sigmoid, scored with binary cross-entropy; torch's `F.binary_cross_entropy` clamps
each log at -100, and so do we, so the two agree everywhere except where float32 probabilities round to 0 or 1
(there ours is the exact value and its gradient stays finite). `pose_softmax=False`: `BCEWithLogitsLoss`.
Both are means over the K classes per RoI; the caller sums over real RoIs and divides by their global count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from acar_jax.core.batch import check_array
from acar_jax.models.predictions import check_pose_classes

_LOG_CLAMP = -100.0  # torch's binary_cross_entropy clamps log(p) and log(1 - p) at -100


def _check(logits, labels, box_mask) -> None:
    """Raises ValueError naming the argument on a wrong rank, shape or dtype."""
    check_array(logits, "logits", "[B, N, K]", (None, None, None), np.floating)
    check_array(labels, "labels", "[B, N, K]", tuple(logits.shape), np.floating)
    check_array(box_mask, "box_mask", "[B, N]", tuple(logits.shape[:2]), np.bool_)


def _softmax_log_probs(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log p_i and log(1 - p_i) of softmax(logits) over the last axis, both exact and finite-gradient.

    log(1 - p_i) = logsumexp_{j != i} l_j - logsumexp_j l_j (no cancellation near p_i = 1).
    """
    k = logits.shape[-1]
    lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    log_p = logits - lse
    if k == 1:  # a single pose class: p = 1, log(1 - p) = -inf, clamped by the caller
        return log_p, jnp.full_like(log_p, -jnp.inf)
    others = jnp.where(jnp.eye(k, dtype=bool), -jnp.inf, logits[..., None, :])  # [..., k (i), k (j)]
    log_1mp = jax.nn.logsumexp(others, axis=-1) - lse
    return log_p, log_1mp


def _log_probs(logits: jax.Array, pose_softmax: bool, num_pose_classes: int) -> tuple[jax.Array, jax.Array]:
    """(log p, log(1 - p)) of the prediction function, per class."""
    log_p, log_1mp = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    if not pose_softmax:
        return log_p, log_1mp
    pose_p, pose_1mp = _softmax_log_probs(logits[..., :num_pose_classes])
    log_p = jnp.concatenate([pose_p, log_p[..., num_pose_classes:]], axis=-1)
    log_1mp = jnp.concatenate([pose_1mp, log_1mp[..., num_pose_classes:]], axis=-1)
    return jnp.maximum(log_p, _LOG_CLAMP), jnp.maximum(log_1mp, _LOG_CLAMP)


def roi_losses(logits: jax.Array, labels: jax.Array, box_mask: jax.Array, *, pose_softmax: bool,
               num_pose_classes: int = 13) -> jax.Array:
    """Per-RoI loss [B, N] float32: mean over the K classes of the binary cross-entropy; 0 for padded boxes.

    logits [B, N, K] float; labels [B, N, K] float multi-hot (soft targets allowed); box_mask [B, N] bool.
    Mean over real RoIs of this = the reference's loss on the same RoIs.
    """
    _check(logits, labels, box_mask)
    check_pose_classes(num_pose_classes, logits.shape[-1])
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.float32)
    # Padded rows may hold anything (even non-finite values); feed zeros so neither value nor gradient leaks.
    logits = jnp.where(box_mask[..., None], logits, 0.0)
    log_p, log_1mp = _log_probs(logits, pose_softmax, num_pose_classes)
    per_class = -(labels * log_p + (1.0 - labels) * log_1mp)
    return jnp.where(box_mask, jnp.mean(per_class, axis=-1), 0.0)
