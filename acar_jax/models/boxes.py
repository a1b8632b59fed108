"""Box geometry on the padded feature map: where a box normalised to its clip's unpadded frame lands.

Boxes reach the model normalised to each clip's own unpadded frame (acar_jax/core/batch.py); clips are zero-padded
bottom/right to a bucket size. These two functions are the only place that accounts for the padding.
"""

from __future__ import annotations

import jax.numpy as jnp


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

