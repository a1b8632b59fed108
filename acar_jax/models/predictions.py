"""The prediction function: logits -> per-class scores, as the reference scores AVA boxes.

`pose_softmax=True`: a softmax over the first `num_pose_classes` logits (AVA's mutually exclusive pose
classes) and a sigmoid for the rest (the reference's `ava_pose_softmax_func`); `pose_softmax=False`: a
sigmoid for every class. The training loss (acar_jax/training/losses.py) is the binary cross-entropy of exactly
these probabilities, and evaluation applies this function to view-fused logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_pose_classes(num_pose_classes: int, num_classes: int) -> None:
    """Raises ValueError unless 1 <= num_pose_classes <= K."""
    if not 1 <= num_pose_classes <= num_classes:
        raise ValueError(f"num_pose_classes: expected 1..K={num_classes}, got {num_pose_classes}")


def predict_scores(logits: jax.Array, *, pose_softmax: bool, num_pose_classes: int = 13) -> jax.Array:
    """Scores in [0, 1] of the same shape; logits [..., K] float (any leading axes: [B, N, K] or [R, K])."""
    if getattr(logits, "ndim", 0) < 1 or not np.issubdtype(np.dtype(logits.dtype), np.floating):
        raise ValueError(f"logits: expected a float array [..., K], got shape "
                         f"{tuple(getattr(logits, 'shape', ()))} dtype {getattr(logits, 'dtype', None)}")
    logits = jnp.asarray(logits, jnp.float32)
    if not pose_softmax:
        return jax.nn.sigmoid(logits)
    check_pose_classes(num_pose_classes, logits.shape[-1])
    pose = jax.nn.softmax(logits[..., :num_pose_classes], axis=-1)
    others = jax.nn.sigmoid(logits[..., num_pose_classes:])
    return jnp.clip(jnp.concatenate([pose, others], axis=-1), 0.0, 1.0)
