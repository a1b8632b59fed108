"""The Linear head (the reference's `models/heads/linear.py`): the baseline without relations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from acar_jax.models.head_layers import (
    Linear,
    check_head_inputs,
    common_head_kwargs,
    dropout_layer,
    roi_features,
    time_average,
)


class LinearHead(nnx.Module):
    """RoIAlign + max pool of each pathway's time-averaged map (slow then fast), concat, dropout, fc."""

    type_name = "linear"

    def __init__(self, width: int, num_classes: int, *, roi_spatial: int = 7, dropout: float = 0.0,
                 roi_sampling_ratio: int = -1, dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        self.roi_spatial = int(roi_spatial)
        self.roi_sampling_ratio = int(roi_sampling_ratio)
        self.fc = Linear(width, num_classes, dtype=dtype, rngs=rngs)
        self.dp = dropout_layer(dropout, rngs)

    def __call__(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                 valid_hw: jax.Array, padded_hw: tuple[int, int], *, train: bool = False) -> jax.Array:
        """slow/fast [B, T, h, w, C], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2] -> logits [B, N, K]."""
        check_head_inputs(slow, fast, boxes, box_mask, valid_hw, padded_hw)
        feats = [roi_features(time_average(x, name), boxes, valid_hw, padded_hw, self.roi_spatial,
                              self.roi_sampling_ratio) for name, x in (("slow", slow), ("fast", fast))]
        x = self.dp(jnp.concatenate(feats, axis=-1), deterministic=not train)
        logits = self.fc(x).astype(jnp.float32)
        return jnp.where(box_mask[..., None], logits, 0.0)

    @classmethod
    def from_config(cls, head_config: ml_collections.ConfigDict, width: int, num_classes: int, *,
                    dtype: jnp.dtype, rngs: nnx.Rngs) -> LinearHead:
        return cls(width, num_classes, **common_head_kwargs(head_config), dtype=dtype, rngs=rngs)
