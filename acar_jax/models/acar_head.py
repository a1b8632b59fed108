"""The ACAR head (the reference's `models/heads/acar.py`): actor-context encoder, HR2O relation blocks and
the classifier, on padded clips and boxes (masking: acar_jax/models/head_layers.py).

Attribute names mirror the reference (conv_reduce, conv1, conv2, hr2o[i].conv_q/conv_k/conv_v/conv/norm,
fc1, fc2; linear: fc), so a state-dict key `module.head.module.<path>.weight` maps to `head/<path>/kernel`:
Conv2d [out, in, kh, kw] -> kernel (kh, kw, in, out); Linear [out, in] -> kernel (in, out); GroupNorm weight /
bias -> scale / bias.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from acar_jax.models.boxes import effective_feature_hw
from acar_jax.models.head_layers import (
    Conv2d,
    Linear,
    MaskedGroupNorm,
    check_head_inputs,
    common_head_kwargs,
    dropout_layer,
    max_pool_3x3_s2,
    relation_classifier,
    roi_features,
    spatial_mask,
    time_averaged_pathways,
)


class HR2O(nnx.Module):
    """High-order relation reasoning operator (the reference's HR2O_NL), per clip over its real actors."""

    def __init__(self, hidden_dim: int, kernel_size: int = 3, mlp_1x1: bool = False, *, dropout: float = 0.2,
                 dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        self.hidden_dim = int(hidden_dim)
        pad = kernel_size // 2
        self.conv_q = Conv2d(hidden_dim, hidden_dim, kernel_size, padding=pad, dtype=dtype, rngs=rngs)
        self.conv_k = Conv2d(hidden_dim, hidden_dim, kernel_size, padding=pad, dtype=dtype, rngs=rngs)
        self.conv_v = Conv2d(hidden_dim, hidden_dim, kernel_size, padding=pad, dtype=dtype, rngs=rngs)
        self.conv = Conv2d(hidden_dim, hidden_dim, 1 if mlp_1x1 else kernel_size, padding=0 if mlp_1x1 else pad,
                           dtype=dtype, rngs=rngs)
        self.norm = MaskedGroupNorm(hidden_dim)
        self.dp = dropout_layer(dropout, rngs)

    def __call__(self, x: jax.Array, spatial_mask: jax.Array, box_mask: jax.Array, *, train: bool) -> jax.Array:
        """x [B, N, h, w, D] (zero outside the crop), spatial_mask [B, h, w], box_mask [B, N] -> same shape."""
        m = spatial_mask[:, None, :, :, None]
        query, key, value = self.conv_q(x), self.conv_k(x), self.conv_v(x)
        att = jnp.einsum("bihwc,bjhwc->bijhw", query.astype(jnp.float32), key.astype(jnp.float32))
        att = att / (self.hidden_dim ** 0.5)
        att = jnp.where(box_mask[:, None, :, None, None], att, jnp.finfo(jnp.float32).min)  # keys: real only
        att = jax.nn.softmax(att, axis=2)
        virt = jnp.einsum("bijhw,bjhwc->bihwc", att, value.astype(jnp.float32))
        virt = jax.nn.relu(self.norm(virt, spatial_mask[:, None]))
        virt = self.dp(self.conv(virt * m), deterministic=not train)
        return (x + virt.astype(x.dtype)) * m


class ACARHead(nnx.Module):
    """Actor-context encoder + HR2O + classifier (the reference's ACARHead), on padded clips and boxes."""

    type_name = "acar"

    def __init__(self, width: int, num_classes: int, *, roi_spatial: int = 7, dropout: float = 0.0,
                 reduce_dim: int = 1024, hidden_dim: int = 512, downsample: str = "max2x2", depth: int = 2,
                 kernel_size: int = 3, mlp_1x1: bool = False, hr2o_dropout: float = 0.2,
                 roi_sampling_ratio: int = -1, dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        if downsample not in ("none", "max2x2"):
            raise ValueError(f"model.head.downsample: expected 'none' or 'max2x2', got {downsample!r}")
        if depth < 0:
            raise ValueError(f"model.head.depth: expected >= 0, got {depth}")
        self.roi_spatial = int(roi_spatial)
        self.roi_sampling_ratio = int(roi_sampling_ratio)
        self.downsample = downsample
        self.conv_reduce = Conv2d(width, reduce_dim, 1, dtype=dtype, rngs=rngs)
        self.conv1 = Conv2d(reduce_dim * 2, hidden_dim, 1, dtype=dtype, rngs=rngs)
        self.conv2 = Conv2d(hidden_dim, hidden_dim, 3, dtype=dtype, rngs=rngs)
        self.hr2o = nnx.List([HR2O(hidden_dim, kernel_size, mlp_1x1, dropout=hr2o_dropout, dtype=dtype, rngs=rngs)
                              for _ in range(depth)])
        self.fc1 = Linear(reduce_dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden_dim * 2, num_classes, dtype=dtype, rngs=rngs)
        self.dp = dropout_layer(dropout, rngs)

    def encode(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, valid_hw: jax.Array,
               padded_hw: tuple[int, int]) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(context V after conv_reduce [B, h, w, R], actor features [B, N, R], crop size [B, 2] of V)."""
        feats = time_averaged_pathways(slow, fast)
        h, w = feats.shape[1:3]
        if h < 3 or w < 3:   # conv2 is a valid 3x3: it needs a 3x3 map (feature stride 16: clips >= 48 px)
            raise ValueError(f"{type(self).__name__}: the feature map is {h}x{w}, it needs at least 3x3 (padded "
                             f"clips of at least 48x48 pixels at feature stride 16); padded_hw = {tuple(padded_hw)}")
        context = self.conv_reduce(feats)
        actors = roi_features(context, boxes, valid_hw, padded_hw, self.roi_spatial, self.roi_sampling_ratio)
        return context, actors, effective_feature_hw(valid_hw, padded_hw, (h, w))

    def relation_input(self, context: jax.Array, actors: jax.Array) -> jax.Array:
        """[V, actor] -> conv1 -> ReLU -> conv2 (valid 3x3, reads the crop only) -> ReLU: [B, N, h-2, w-2, D]."""
        reduce_dim = context.shape[-1]
        w1 = self.conv1.kernel[...][0, 0]  # [2R, D]: the 1x1 conv on a concat is a sum of two matmuls
        dt = self.conv1.dtype
        ctx = context.astype(dt) @ w1[:reduce_dim].astype(dt)     # [B, h, w, D]
        act = actors.astype(dt) @ w1[reduce_dim:].astype(dt)      # [B, N, D]
        x = jax.nn.relu(ctx[:, None] + act[:, :, None, None])     # [B, N, h, w, D]
        return jax.nn.relu(self.conv2(x))

    def __call__(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                 valid_hw: jax.Array, padded_hw: tuple[int, int], *, train: bool = False) -> jax.Array:
        """slow/fast [B, T, h, w, C], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2] -> logits [B, N, K]."""
        check_head_inputs(slow, fast, boxes, box_mask, valid_hw, padded_hw)
        context, actors, eff = self.encode(slow, fast, boxes, valid_hw, padded_hw)
        x = self.relation_input(context, actors)
        eff = eff - 2
        if self.downsample == "max2x2":
            mask = spatial_mask(eff, *x.shape[2:4])
            x = max_pool_3x3_s2(jnp.where(mask[:, None, :, :, None] > 0, x, -jnp.inf))
            eff = (eff - 1) // 2 + 1
        mask = spatial_mask(eff, *x.shape[2:4])
        x = jnp.where(mask[:, None, :, :, None] > 0, x, 0.0)   # -inf pads: where, not 0 * inf
        for block in self.hr2o:
            x = block(x, mask, box_mask, train=train)
        return relation_classifier(self, actors, x, mask, box_mask, train=train)

    @classmethod
    def from_config(cls, head_config: ml_collections.ConfigDict, width: int, num_classes: int, *,
                    dtype: jnp.dtype, rngs: nnx.Rngs) -> ACARHead:
        h = head_config
        return cls(width, num_classes, reduce_dim=int(h.reduce_dim), hidden_dim=int(h.hidden_dim),
                   downsample=str(h.downsample), depth=int(h.depth), kernel_size=int(h.kernel_size),
                   mlp_1x1=bool(h.mlp_1x1), hr2o_dropout=float(h.hr2o_dropout), **common_head_kwargs(h),
                   dtype=dtype, rngs=rngs)


def first_order_maps(head: ACARHead, slow: jax.Array, fast: jax.Array, boxes: jax.Array, valid_hw: jax.Array,
                     padded_hw: tuple[int, int]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """An ACAR head's actor features and first-order maps before its downsampling (what an ACFB bank stores).

    Returns (actors [B, N, R], maps [B, N, h-2, w-2, D] zero outside each clip's crop, eff [B, 2] the crop
    size of the maps). Uses the head's own weights; `head.downsample` is ignored.
    """
    context, actors, eff = head.encode(slow, fast, boxes, valid_hw, padded_hw)
    x = head.relation_input(context, actors)
    eff = eff - 2
    mask = spatial_mask(eff, *x.shape[2:4])
    return actors, jnp.where(mask[:, None, :, :, None] > 0, x, 0.0), eff


def actor_features(head: ACARHead, slow: jax.Array, fast: jax.Array, boxes: jax.Array, valid_hw: jax.Array,
                   padded_hw: tuple[int, int]) -> jax.Array:
    """ACAR's actor feature: RoIAlign + max over `head.conv_reduce` of the time-averaged pathways -> [B, N, R]."""
    return roi_features(head.conv_reduce(time_averaged_pathways(slow, fast)), boxes, valid_hw, padded_hw,
                        head.roi_spatial, head.roi_sampling_ratio)
