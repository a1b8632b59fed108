"""Linear and ACAR heads (the reference's `models/heads/linear.py`, `acar.py`) on padded batches, NHWC.

The reference runs one clip at a time on its own unpadded context map; here every clip of a batch is padded to
the same feature size `[h, w]` and every clip to `N` box slots. Masks make the padded computation equal to the
reference's cropped one for every real actor: the context map is cropped per clip to its effective size
`ceil(h * valid / padded)` by zeroing outside it before each padded 3x3 conv (the reference's zero padding at
the crop border), -inf padding for the max pool, GroupNorm statistics and the average pool over the crop only,
and a softmax over the real actors of the same clip only. The effective size after each op is derived exactly:
valid 3x3 conv e - 2, max pool 3x3 / 2 pad 1 floor((e - 1) / 2) + 1.

Attribute names mirror the reference (conv_reduce, conv1, conv2, hr2o[i].conv_q/conv_k/conv_v/conv/norm,
fc1, fc2; linear: fc), so a state-dict key `module.head.module.<path>.weight` maps to `head/<path>/kernel`:
Conv2d [out, in, kh, kw] -> kernel (kh, kw, in, out); Linear [out, in] -> kernel (in, out); GroupNorm weight /
bias -> scale / bias.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from acar_jax.batch import check_array
from acar_jax.models.boxes import boxes_to_feature_rois, effective_feature_hw
from acar_jax.ops import roi_align


def _torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
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
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), shape, in_channels * kernel_size**2))

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
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), (in_features, out_features), in_features))

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


def _spatial_mask(eff_hw: jax.Array, h: int, w: int) -> jax.Array:
    """[B, h, w] float32: 1 inside each clip's effective (top-left) region."""
    rows = jnp.arange(h)[None, :, None] < eff_hw[:, 0, None, None]
    cols = jnp.arange(w)[None, None, :] < eff_hw[:, 1, None, None]
    return (rows & cols).astype(jnp.float32)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """torch `MaxPool2d(3, stride=2, padding=1)` on [..., H, W, C] (pads with -inf)."""
    window = (1,) * (x.ndim - 3) + (3, 3, 1)
    strides = (1,) * (x.ndim - 3) + (2, 2, 1)
    pads = ((0, 0),) * (x.ndim - 3) + ((1, 1), (1, 1), (0, 0))
    return jax.lax.reduce_window(x, np.array(-np.inf, x.dtype), jax.lax.max, window, strides, pads)


def _time_average(x: jax.Array, name: str) -> jax.Array:
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


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    return nnx.Dropout(float(rate), rng_collection="dropout", rngs=rngs)


class LinearHead(nnx.Module):
    """RoIAlign + max pool of each pathway's time-averaged map (slow then fast), concat, dropout, fc."""

    def __init__(self, width: int, num_classes: int, *, roi_spatial: int = 7, dropout: float = 0.0,
                 roi_sampling_ratio: int = -1, dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        self.roi_spatial = int(roi_spatial)
        self.roi_sampling_ratio = int(roi_sampling_ratio)
        self.fc = Linear(width, num_classes, dtype=dtype, rngs=rngs)
        self.dp = _dropout(dropout, rngs)

    def __call__(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                 valid_hw: jax.Array, padded_hw: tuple[int, int], *, train: bool = False) -> jax.Array:
        """slow/fast [B, T, h, w, C], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2] -> logits [B, N, K]."""
        check_head_inputs(slow, fast, boxes, box_mask, valid_hw, padded_hw)
        feats = [roi_features(_time_average(x, name), boxes, valid_hw, padded_hw, self.roi_spatial,
                              self.roi_sampling_ratio) for name, x in (("slow", slow), ("fast", fast))]
        x = self.dp(jnp.concatenate(feats, axis=-1), deterministic=not train)
        logits = self.fc(x).astype(jnp.float32)
        return jnp.where(box_mask[..., None], logits, 0.0)


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
        self.dp = _dropout(dropout, rngs)

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
        self.dp = _dropout(dropout, rngs)

    def _first_order(self, context: jax.Array, actors: jax.Array, eff: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[V, actor] -> conv1 -> ReLU -> conv2 (valid) -> ReLU -> downsample, on the crop: ([B, N, h', w', D],
        its spatial mask [B, h', w'])."""
        reduce_dim = context.shape[-1]
        w1 = self.conv1.kernel[...][0, 0]  # [2R, D]: the 1x1 conv on a concat is a sum of two matmuls
        dt = self.conv1.dtype
        ctx = context.astype(dt) @ w1[:reduce_dim].astype(dt)     # [B, h, w, D]
        act = actors.astype(dt) @ w1[reduce_dim:].astype(dt)      # [B, N, D]
        x = jax.nn.relu(ctx[:, None] + act[:, :, None, None])     # [B, N, h, w, D]
        x = jax.nn.relu(self.conv2(x))                            # valid 3x3: reads the crop only
        eff = eff - 2
        if self.downsample == "max2x2":
            spatial_mask = _spatial_mask(eff, *x.shape[2:4])
            x = _max_pool_3x3_s2(jnp.where(spatial_mask[:, None, :, :, None] > 0, x, -jnp.inf))
            eff = (eff - 1) // 2 + 1
        spatial_mask = _spatial_mask(eff, *x.shape[2:4])
        x = jnp.where(spatial_mask[:, None, :, :, None] > 0, x, 0.0)   # -inf pads: where, not 0 * inf
        return x.astype(x.dtype), spatial_mask

    def __call__(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                 valid_hw: jax.Array, padded_hw: tuple[int, int], *, train: bool = False) -> jax.Array:
        """slow/fast [B, T, h, w, C], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2] -> logits [B, N, K]."""
        check_head_inputs(slow, fast, boxes, box_mask, valid_hw, padded_hw)
        feats = jnp.concatenate([_time_average(slow, "slow"), _time_average(fast, "fast")], axis=-1)
        h, w = feats.shape[1:3]
        if h < 3 or w < 3:   # conv2 is a valid 3x3: it needs a 3x3 map (feature stride 16: clips >= 48 px)
            raise ValueError(f"ACAR head: the feature map is {h}x{w}, it needs at least 3x3 (padded clips of at "
                             f"least 48x48 pixels at feature stride 16); padded_hw = {tuple(padded_hw)}")
        context = self.conv_reduce(feats)                                          # [B, h, w, R]
        actors = roi_features(context, boxes, valid_hw, padded_hw, self.roi_spatial, self.roi_sampling_ratio)
        eff = effective_feature_hw(valid_hw, padded_hw, (h, w))                    # [B, 2]
        x, spatial_mask = self._first_order(context, actors, eff)
        for block in self.hr2o:
            x = block(x, spatial_mask, box_mask, train=train)
        return relation_classifier(self, actors, x, spatial_mask, box_mask, train=train)


def relation_classifier(head: nnx.Module, actors: jax.Array, x: jax.Array, spatial_mask: jax.Array,
                        box_mask: jax.Array, *, train: bool) -> jax.Array:
    """ACAR's classifier, shared by the ACFB head: [ReLU(fc1(actor feature)), masked mean of the relation maps]
    -> dropout -> fc2. actors [B, N, R], x [B, N, h, w, D], spatial_mask [B, h, w] -> logits [B, N, K]."""
    m = spatial_mask[:, None, :, :, None]
    gap = jnp.sum(x.astype(jnp.float32) * m, axis=(2, 3)) / jnp.maximum(jnp.sum(m, axis=(2, 3)), 1.0)
    out = jnp.concatenate([jax.nn.relu(head.fc1(actors)).astype(jnp.float32), gap], axis=-1)
    out = head.dp(out, deterministic=not train)
    logits = head.fc2(out).astype(jnp.float32)
    return jnp.where(box_mask[..., None], logits, 0.0)


def build_head(model_config: ml_collections.ConfigDict, width: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """The head named by `model_config.head.type` ("linear" | "acar" | "acfb" | "lfb") on a `width`-channel
    backbone."""
    head, k = model_config.head, int(model_config.num_classes)
    dtype = jnp.dtype(model_config.get("dtype", "float32"))
    common = dict(roi_spatial=int(head.roi_spatial), dropout=float(head.dropout),
                  roi_sampling_ratio=int(head.roi_sampling_ratio), dtype=dtype, rngs=rngs)
    if head.type == "linear":
        return LinearHead(width, k, **common)
    if head.type == "acar":
        return ACARHead(width, k, reduce_dim=int(head.reduce_dim), hidden_dim=int(head.hidden_dim),
                        downsample=str(head.downsample), depth=int(head.depth), kernel_size=int(head.kernel_size),
                        mlp_1x1=bool(head.mlp_1x1), hr2o_dropout=float(head.hr2o_dropout), **common)
    if head.type == "acfb":
        from acar_jax.models.acfb import ACFBHead  # noqa: PLC0415 (acfb builds on this module)
        if head.downsample != "none":
            raise ValueError(f"model.head.downsample: the ACFB head has no downsampling; set 'none', got "
                             f"{head.downsample!r}")
        return ACFBHead(width, k, reduce_dim=int(head.reduce_dim), hidden_dim=int(head.hidden_dim),
                        depth=int(head.depth), kernel_size=int(head.kernel_size), mlp_1x1=bool(head.mlp_1x1),
                        hr2o_dropout=float(head.hr2o_dropout), **common)
    if head.type == "lfb":
        from acar_jax.models.lfb import LFBHead  # noqa: PLC0415 (lfb builds on this module)
        return LFBHead(width, k, reduce_dim=int(head.reduce_dim), hidden_dim=int(head.hidden_dim),
                       depth=int(head.depth), hr2o_dropout=float(head.hr2o_dropout), **common)
    raise ValueError(f"model.head.type: expected 'linear', 'acar', 'acfb' or 'lfb', got {head.type!r}")
