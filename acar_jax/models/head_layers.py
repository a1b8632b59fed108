"""Layers the heads share, NHWC on padded batches: torch-initialised convs and dense layers, the masked
GroupNorm, the crop masks, RoI features and ACAR's classifier.

The reference runs one clip at a time on its own unpadded context map; here every clip of a batch is padded to
the same feature size `[h, w]` and every clip to `N` box slots. Masks make the padded computation equal to the
reference's cropped one for every real actor: the context map is cropped per clip to its effective size
`ceil(h * valid / padded)` by zeroing outside it before each padded 3x3 conv (the reference's zero padding at
the crop border), -inf padding for the max pool, GroupNorm statistics and the average pool over the crop only,
and a softmax over the real actors of the same clip only. The effective size after each op is derived exactly:
valid 3x3 conv e - 2, max pool 3x3 / 2 pad 1 floor((e - 1) / 2) + 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from acar_jax.core.batch import check_array
from acar_jax.models.boxes import boxes_to_feature_rois
from acar_jax.ops import roi_align


def torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    """PyTorch's default Conv / Linear init (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class Conv2d(nnx.Module):
    """Bias-free 2-D convolution, NHWC, kernel (kh, kw, in, out), symmetric zero padding (torch `Conv2d`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0,
                 dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        self.padding = int(padding)
        self.dtype = jnp.dtype(dtype)
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(torch_uniform(rngs.params(), shape, in_channels * kernel_size**2))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [..., H, W, in] -> [..., H', W', out] (leading axes folded into the batch).

        On XLA:CPU an unpadded ("valid") k x k convolution runs as the same convolution padded by k // 2 with
        the border outputs cropped: the outputs kept read no padding, so they are the same sums (equal in the
        tests), and XLA:CPU ran the valid form of the ACAR head's 3x3 conv2 3.5x slower (R50 inference, 5 actors
        at 16 x 29: 101 vs 29 ms; docs/performance.md). Elsewhere the valid form runs as written.
        """
        lead = x.shape[:-3]
        x = x.reshape((-1, *x.shape[-3:]))
        kernel = self.kernel[...]
        pad, crop = self.padding, 0
        if pad == 0 and kernel.shape[0] > 1 and jax.default_backend() == "cpu":
            pad = crop = kernel.shape[0] // 2
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), kernel.astype(self.dtype), window_strides=(1, 1),
            padding=[(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if crop:
            y = y[:, crop: y.shape[1] - crop, crop: y.shape[2] - crop]
        return y.reshape((*lead, *y.shape[1:]))


class Linear(nnx.Module):
    """Bias-free dense layer, kernel (in, out) (torch `Linear(bias=False)`)."""

    def __init__(self, in_features: int, out_features: int, *, dtype: jnp.dtype | str = jnp.float32,
                 rngs: nnx.Rngs):
        self.dtype = jnp.dtype(dtype)
        self.kernel = nnx.Param(torch_uniform(rngs.params(), (in_features, out_features), in_features))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x.astype(self.dtype) @ self.kernel[...].astype(self.dtype)


class MaskedGroupNorm(nnx.Module):
    """GroupNorm with one group (torch `GroupNorm(1, C)`, eps 1e-5), statistics over the masked pixels only."""

    def __init__(self, num_features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None):
        del rngs  # deterministic init: scale 1, bias 0, as torch
        self.eps = float(eps)
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x: jax.Array, spatial_mask: jax.Array) -> jax.Array:
        """x [..., H, W, C], spatial_mask [..., H, W] (broadcastable, float 0/1) -> normalised x, float32."""
        x = x.astype(jnp.float32)
        m = jnp.broadcast_to(spatial_mask, x.shape[:-1])[..., None]
        count = jnp.maximum(jnp.sum(m, axis=(-3, -2, -1), keepdims=True) * x.shape[-1], 1.0)
        mean = jnp.sum(x * m, axis=(-3, -2, -1), keepdims=True) / count
        var = jnp.sum(jnp.square(x - mean) * m, axis=(-3, -2, -1), keepdims=True) / count
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


def spatial_mask(eff_hw: jax.Array, h: int, w: int) -> jax.Array:
    """[B, h, w] float32: 1 inside each clip's effective (top-left) region."""
    rows = jnp.arange(h)[None, :, None] < eff_hw[:, 0, None, None]
    cols = jnp.arange(w)[None, None, :] < eff_hw[:, 1, None, None]
    return (rows & cols).astype(jnp.float32)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """torch `MaxPool2d(3, stride=2, padding=1)` on [..., H, W, C] (pads with -inf)."""
    window = (1,) * (x.ndim - 3) + (3, 3, 1)
    strides = (1,) * (x.ndim - 3) + (2, 2, 1)
    pads = ((0, 0),) * (x.ndim - 3) + ((1, 1), (1, 1), (0, 0))
    return jax.lax.reduce_window(x, np.array(-np.inf, x.dtype), jax.lax.max, window, strides, pads)


def time_average(x: jax.Array, name: str) -> jax.Array:
    """[B, T, h, w, C] -> [B, h, w, C] float32 (the reference's AdaptiveAvgPool3d((1, h, w)))."""
    if x.ndim != 5:
        raise ValueError(f"{name}: expected rank 5 [B, T, h, w, C], got shape {tuple(x.shape)}")
    return jnp.mean(x.astype(jnp.float32), axis=1)


def check_head_inputs(slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                      valid_hw: jax.Array, padded_hw: tuple[int, int]) -> None:
    """Raises ValueError naming the argument on a wrong rank, shape or dtype of a head input."""
    check_array(slow, "slow", "[B, T, h, w, C]", (None,) * 5, np.floating)
    b, _, h, w, _ = slow.shape
    check_array(fast, "fast", "[B, T, h, w, C] like slow", (b, None, h, w, None), np.floating)
    check_array(boxes, "boxes", "[B, N, 4]", (b, None, 4), np.floating)
    check_array(box_mask, "box_mask", "[B, N]", tuple(boxes.shape[:2]), np.bool_)
    check_array(valid_hw, "valid_hw", "[B, 2]", (b, 2), np.integer)
    if len(tuple(padded_hw)) != 2 or min(int(v) for v in padded_hw) < 1:
        raise ValueError(f"padded_hw: expected the clip size (H, W) in pixels, got {padded_hw!r}")


def roi_features(context: jax.Array, boxes: jax.Array, valid_hw: jax.Array, padded_hw: tuple[int, int],
                 output_size: int, sampling_ratio: int) -> jax.Array:
    """RoIAlign on the full padded map then max pool over the bins: context [B, h, w, C] -> [B, N, C].

    Boxes (normalised on each clip's unpadded frame) map onto the padded feature map by `boxes_to_feature_rois`;
    vmapped per clip so every box only reads its own image.
    """
    h, w = context.shape[1:3]
    rois = boxes_to_feature_rois(boxes, valid_hw, padded_hw, (h, w))  # [B, N, 4] feature pixels

    def one_clip(feature: jax.Array, clip_rois: jax.Array) -> jax.Array:
        rows = jnp.concatenate([jnp.zeros_like(clip_rois[:, :1]), clip_rois], axis=-1)
        pooled = roi_align(feature[None], rows, output_size, sampling_ratio=sampling_ratio)
        return jnp.max(pooled, axis=(1, 2))

    return jax.vmap(one_clip)(context, rois)


def dropout_layer(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    """Dropout on the "dropout" rng stream (the train step reseeds it from (seed, step))."""
    return nnx.Dropout(float(rate), rng_collection="dropout", rngs=rngs)


def time_averaged_pathways(slow: jax.Array, fast: jax.Array) -> jax.Array:
    """slow [B, T, h, w, Cs], fast [B, T', h, w, Cf] -> [B, h, w, Cs + Cf] float32: each pathway averaged over
    time, concatenated on channels (the feature map V of the heads)."""
    return jnp.concatenate([time_average(slow, "slow"), time_average(fast, "fast")], axis=-1)


def common_head_kwargs(head_config: ml_collections.ConfigDict) -> dict:
    """The constructor arguments every head takes from `config.model.head`."""
    return dict(roi_spatial=int(head_config.roi_spatial), dropout=float(head_config.dropout),
                roi_sampling_ratio=int(head_config.roi_sampling_ratio))


def relation_classifier(head: nnx.Module, actors: jax.Array, x: jax.Array, spatial_mask: jax.Array,
                        box_mask: jax.Array, *, train: bool) -> jax.Array:
    """ACAR's classifier, shared by the ACAR, ACFB and LFB heads: [ReLU(fc1(actor feature)), masked mean of the
    relation maps]
    -> dropout -> fc2. actors [B, N, R], x [B, N, h, w, D], spatial_mask [B, h, w] -> logits [B, N, K]."""
    m = spatial_mask[:, None, :, :, None]
    gap = jnp.sum(x.astype(jnp.float32) * m, axis=(2, 3)) / jnp.maximum(jnp.sum(m, axis=(2, 3)), 1.0)
    out = jnp.concatenate([jax.nn.relu(head.fc1(actors)).astype(jnp.float32), gap], axis=-1)
    out = head.dp(out, deterministic=not train)
    logits = head.fc2(out).astype(jnp.float32)
    return jnp.where(box_mask[..., None], logits, 0.0)
