"""SlowFast backbone (ACAR-Net's `models/backbones/slowfast.py` semantics) as a Flax NNX module, NTHWC layout.

The reference hard-codes a slow stem width of 64; here it is `backbone.width`, and every channel count is the
reference's formula with 64 replaced by `width` (so width 64 reproduces R50/R101/R152 exactly).

Attribute names mirror the reference so that importing PyTorch weights is a mechanical map. PyTorch state-dict
key (inside `module.backbone.module.`) -> NNX state path:

    fast_conv1.weight                         -> fast_conv1.kernel     (out,in,kt,kh,kw) -> (kt,kh,kw,in,out)
    fast_bn1.{weight,bias}                    -> fast_bn1.{scale,bias}               (nnx.Param)
    fast_bn1.{running_mean,running_var}       -> fast_bn1.{mean,var}                 (nnx.BatchStat)
    fast_res1.0.conv1.weight                  -> fast_res1.0.conv1.kernel  (same for conv2, conv3; bn1..bn3)
    fast_res1.0.downsample.0.weight           -> fast_res1.0.downsample.kernel  (reference: Sequential(conv))
    fast_res1.0.downsample_bn.*               -> fast_res1.0.downsample_bn.*
    slow_* likewise
    Tconv1.weight          (fuse_only_conv)   -> Tconv1.conv.kernel
    Tconv1.0.weight        (conv + BN + ReLU) -> Tconv1.conv.kernel
    Tconv1.1.*             (conv + BN + ReLU) -> Tconv1.bn.*
    *.num_batches_tracked                     -> (dropped: frozen BN has no use for it)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from acar_jax.core.batch import check_array
from acar_jax.models.layers import Conv3d, FrozenBatchNorm, resolve_conv3d, stem_max_pool

EXPANSION = 4  # bottleneck output channels = planes * EXPANSION


class Bottleneck(nnx.Module):
    """ResNet bottleneck: conv1 (1x1x1 or 3x1x1) -> conv2 (1x3x3, stride/dilation) -> conv3 (1x1x1, x4)."""

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: bool = False,
                 dilation: int = 1, head_conv: int = 1, eps: float, dtype: jnp.dtype, conv3d: str = "folded",
                 kernel_grad: str = "auto", rngs: nnx.Rngs):
        if head_conv not in (1, 3):
            raise ValueError(f"head_conv: expected 1 or 3, got {head_conv}")
        conv = dict(dtype=dtype, path=conv3d, kernel_grad=kernel_grad, rngs=rngs)
        self.conv1 = Conv3d(inplanes, planes, (head_conv, 1, 1), padding=(head_conv // 2, 0, 0), **conv)
        self.bn1 = FrozenBatchNorm(planes, eps=eps)
        self.conv2 = Conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride),
                            padding=(0, dilation, dilation), dilation=(1, dilation, dilation), **conv)
        self.bn2 = FrozenBatchNorm(planes, eps=eps)
        self.conv3 = Conv3d(planes, planes * EXPANSION, 1, **conv)
        self.bn3 = FrozenBatchNorm(planes * EXPANSION, eps=eps)
        self.downsample = (Conv3d(inplanes, planes * EXPANSION, 1, stride=(1, stride, stride), **conv)
                           if downsample else None)
        self.downsample_bn = FrozenBatchNorm(planes * EXPANSION, eps=eps) if downsample else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, H, W, inplanes] -> [B, T, H/stride, W/stride, planes * 4]."""
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = jax.nn.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = x if self.downsample is None else self.downsample_bn(self.downsample(x))
        return jax.nn.relu(out + res.astype(out.dtype))


class LateralFusion(nnx.Module):
    """Fast -> slow: conv (k,1,1) stride (alpha,1,1) pad (k//2,0,0), then BN + ReLU unless conv-only."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, alpha: int, only_conv: bool,
                 eps: float, dtype: jnp.dtype, conv3d: str = "folded", kernel_grad: str = "auto",
                 rngs: nnx.Rngs):
        self.conv = Conv3d(in_channels, out_channels, (kernel_size, 1, 1), stride=(alpha, 1, 1),
                           padding=(kernel_size // 2, 0, 0), dtype=dtype, path=conv3d, kernel_grad=kernel_grad,
                           rngs=rngs)
        self.bn = None if only_conv else FrozenBatchNorm(out_channels, eps=eps)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, H, W, C_fast] -> [B, T', H, W, out_channels]."""
        y = self.conv(x)
        return y if self.bn is None else jax.nn.relu(self.bn(y))


def slow_frame_indices(num_frames: int, alpha: int, full_span: bool) -> np.ndarray:
    """Frame indices of the slow pathway, exactly as the reference picks them.

    full_span: `torch.linspace(0, T-1, T // alpha).long()`; torch computes linspace in float32 from both ends
    (start + i*step for the first half, end - (steps-1-i)*step for the second) and `.long()` truncates, so the
    same float32 arithmetic is replayed here. Otherwise `::alpha`.
    """
    if not full_span:
        return np.arange(0, num_frames, alpha, dtype=np.int64)
    steps = num_frames // alpha
    if steps < 1:
        raise ValueError(f"clips: slow_full_span needs T >= alpha ({alpha}) frames, got T={num_frames}")
    if steps == 1:
        return np.zeros((1,), np.int64)
    start, end = np.float32(0.0), np.float32(num_frames - 1)
    step = (end - start) / np.float32(steps - 1)
    i = np.arange(steps)
    from_start = start + step * i.astype(np.float32)
    from_end = end - step * (steps - 1 - i).astype(np.float32)
    values = np.where(i < steps // 2, from_start, from_end).astype(np.float32)
    return np.trunc(values).astype(np.int64)


def _run_blocks(blocks: nnx.List, x: jax.Array) -> jax.Array:
    """Applies a stage's blocks in order (a free function so that `nnx.remat` can wrap it)."""
    for block in blocks:
        x = block(x)
    return x


def _check_config(cfg: ml_collections.ConfigDict) -> None:
    """Rejects backbone configs the reference could not build, naming the field."""
    layers = tuple(cfg.layers)
    if len(layers) != 4 or any(int(n) < 1 for n in layers):
        raise ValueError(f"model.backbone.layers: expected 4 positive block counts, got {layers}")
    for name in ("width", "alpha", "fuse_kernel_size", "res5_dilation"):
        if int(cfg[name]) < 1:
            raise ValueError(f"model.backbone.{name}: expected a positive int, got {cfg[name]}")
    if not 0 < float(cfg.beta) <= 1:
        raise ValueError(f"model.backbone.beta: expected 0 < beta <= 1, got {cfg.beta}")


class SlowFast(nnx.Module):
    """SlowFast-ResNet with ACAR-Net's lateral fusion, res5 dilation and frozen BatchNorm.

    `backbone_config` is `config.model.backbone`. `dtype` is the compute dtype of convolutions (params and
    BN statistics stay float32); `remat` rematerialises each residual stage in the backward pass; `conv3d` is
    config.model.conv3d ("auto" resolves by the default backend, layers.resolve_conv3d); `kernel_grad` is
    config.model.conv_kernel_grad (layers.Conv3d: how the folded path computes kernel gradients).
    """

    def __init__(self, backbone_config: ml_collections.ConfigDict, *, dtype: jnp.dtype | str = jnp.float32,
                 remat: bool = False, conv3d: str = "auto", kernel_grad: str = "auto", rngs: nnx.Rngs):
        cfg = backbone_config
        _check_config(cfg)
        width, beta, alpha = int(cfg.width), float(cfg.beta), int(cfg.alpha)
        eps, k, dil = float(cfg.bn_eps), int(cfg.fuse_kernel_size), int(cfg.res5_dilation)
        self.alpha = alpha
        self.beta = beta
        self.slow_full_span = bool(cfg.slow_full_span)
        self.fuse_kernel_size = k
        self.dtype = jnp.dtype(dtype)  # accepts "bfloat16" as written in config.model.dtype
        self.remat = bool(remat)
        self.conv3d = resolve_conv3d(conv3d)
        common = dict(eps=eps, dtype=dtype, conv3d=self.conv3d, kernel_grad=kernel_grad, rngs=rngs)
        conv = dict(dtype=dtype, path=self.conv3d, kernel_grad=kernel_grad, rngs=rngs)
        layers = tuple(int(n) for n in cfg.layers)
        strides = (1, 2, 2, 1)
        dilations = (1, 1, 1, dil)

        # Fast pathway: stem int(width * beta), stage planes int(width * 2^i * beta), temporal head convs.
        self.fast_inplanes = int(width * beta)
        if self.fast_inplanes < 1:
            raise ValueError(f"model.backbone.beta: int(width * beta) = int({width} * {beta}) must be >= 1")
        self.fast_conv1 = Conv3d(3, self.fast_inplanes, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3),
                                 **conv)
        self.fast_bn1 = FrozenBatchNorm(self.fast_inplanes, eps=eps)
        fast_in = [self.fast_inplanes]  # fast channels entering Tconv1..Tconv4
        for i in range(4):
            planes = int(width * 2**i * beta)
            blocks = self._make_stage(fast_in[-1], planes, layers[i], strides[i], dilations[i], 3, common)
            setattr(self, f"fast_res{i + 1}", blocks)
            fast_in.append(planes * EXPANSION)

        # Slow pathway: stem `width`; each stage sees slow + 2 * int(slow * beta) channels after fusion.
        self.slow_conv1 = Conv3d(3, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), **conv)
        self.slow_bn1 = FrozenBatchNorm(width, eps=eps)
        slow_in = width
        fused_extra = []  # channels the reference expects from Tconv1..Tconv4
        for i in range(4):
            planes = width * 2**i
            fused_extra.append(int(slow_in * beta) * 2)
            blocks = self._make_stage(slow_in + fused_extra[-1], planes, layers[i], strides[i], dilations[i],
                                      1 if i < 2 else 3, common)
            setattr(self, f"slow_res{i + 1}", blocks)
            slow_in = planes * EXPANSION

        # Lateral connections, declared as the reference declares them (its 64 replaced by width).
        fuse_io = [(int(m * width * beta), int(2 * m * width * beta)) for m in (1, 4, 8, 16)]
        for i, (c_in, c_out) in enumerate(fuse_io):
            if c_in != fast_in[i] or c_out != fused_extra[i]:
                raise ValueError(
                    f"model.backbone.width/beta: width={width}, beta={beta} give inconsistent channels at "
                    f"Tconv{i + 1} (declared {c_in}->{c_out}, pathways need {fast_in[i]}->{fused_extra[i]}); "
                    "the reference cannot build this either")
            setattr(self, f"Tconv{i + 1}", LateralFusion(c_in, c_out, kernel_size=k, alpha=alpha,
                                                         only_conv=bool(cfg.fuse_only_conv), **common))
        self.slow_channels = slow_in
        self.fast_channels = fast_in[-1]

    @staticmethod
    def _make_stage(inplanes: int, planes: int, num_blocks: int, stride: int, dilation: int, head_conv: int,
                    common: dict) -> nnx.List:
        """One residual stage; the first block downsamples if stride or width changes (`_make_layer_*`)."""
        downsample = stride != 1 or inplanes != planes * EXPANSION
        blocks = [Bottleneck(inplanes, planes, stride=stride, downsample=downsample, dilation=dilation,
                             head_conv=head_conv, **common)]
        blocks += [Bottleneck(planes * EXPANSION, planes, dilation=dilation, head_conv=head_conv, **common)
                   for _ in range(1, num_blocks)]
        return nnx.List(blocks)

    def _stage(self, blocks: nnx.List, x: jax.Array) -> jax.Array:
        run = nnx.remat(_run_blocks) if self.remat else _run_blocks
        return run(blocks, x)

    def _check_clips(self, clips: jax.Array) -> None:
        check_array(clips, "clips", "[B, T, H, W, 3] (NTHWC)", (None, None, None, None, 3), np.floating)
        t = clips.shape[1]
        k = self.fuse_kernel_size
        lateral_t = (t + 2 * (k // 2) - k) // self.alpha + 1
        slow_t = len(slow_frame_indices(t, self.alpha, self.slow_full_span))
        if lateral_t != slow_t:
            raise ValueError(
                f"clips: T={t} gives {slow_t} slow frames but the lateral fusion (kernel {k}, stride "
                f"{self.alpha}) gives {lateral_t}; use T divisible by alpha={self.alpha}")

    def _fast_path(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        x = stem_max_pool(jax.nn.relu(self.fast_bn1(self.fast_conv1(x))))
        laterals = []
        for tconv, stage in ((self.Tconv1, self.fast_res1), (self.Tconv2, self.fast_res2),
                             (self.Tconv3, self.fast_res3), (self.Tconv4, self.fast_res4)):
            laterals.append(tconv(x))
            x = self._stage(stage, x)
        return x, laterals

    def _slow_path(self, x: jax.Array, laterals: Sequence[jax.Array]) -> jax.Array:
        x = stem_max_pool(jax.nn.relu(self.slow_bn1(self.slow_conv1(x))))
        for lateral, stage in zip(laterals, (self.slow_res1, self.slow_res2, self.slow_res3, self.slow_res4),
                                  strict=True):
            x = self._stage(stage, jnp.concatenate([x, lateral.astype(x.dtype)], axis=-1))
        return x

    def __call__(self, clips: jax.Array) -> tuple[jax.Array, jax.Array]:
        """clips [B, T, H, W, 3] -> (slow [B, T//alpha, h, w, 32*width], fast [B, T, h, w, C_fast]).

        h, w = ceil(H/16), ceil(W/16); C_fast = int(8 * width * beta) * 4 (256 for R50); outputs in `dtype`.
        """
        self._check_clips(clips)
        x = clips.astype(self.dtype)
        fast, laterals = self._fast_path(x)
        if self.slow_full_span:
            slow_in = x[:, slow_frame_indices(x.shape[1], self.alpha, True)]
        else:
            slow_in = x[:, ::self.alpha]
        return self._slow_path(slow_in, laterals), fast
