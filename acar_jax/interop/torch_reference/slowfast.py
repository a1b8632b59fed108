"""PyTorch oracle of ACAR-Net's SlowFast backbone, plus the table-driven weight copy into the Flax module.

Written from the reference's semantics (models/backbones/slowfast.py): the module tree and attribute names are
the reference's, so `state_dict()` keys are exactly the reference's (for width 64). Differences, none of which
changes the numbers: the stem width is an argument (`width`, 64 in the reference), there is no `.cuda()`, and
Bottleneck's ReLU is not in-place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn as tnn
from flax import nnx

EXPANSION = 4


class Bottleneck(tnn.Module):
    """Reference bottleneck: conv1 (1x1x1 or 3x1x1), conv2 (1x3x3 stride/dilation), conv3 (1x1x1, x4)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: tnn.Module | None = None,
                 dilation: int = 1, head_conv: int = 1):
        super().__init__()
        self.conv1 = tnn.Conv3d(inplanes, planes, kernel_size=(head_conv, 1, 1),
                                padding=(head_conv // 2, 0, 0), bias=False)
        self.bn1 = tnn.BatchNorm3d(planes)
        self.conv2 = tnn.Conv3d(planes, planes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                                padding=(0, dilation, dilation), dilation=(1, dilation, dilation), bias=False)
        self.bn2 = tnn.BatchNorm3d(planes)
        self.conv3 = tnn.Conv3d(planes, planes * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = tnn.BatchNorm3d(planes * EXPANSION)
        self.relu = tnn.ReLU()
        self.downsample = downsample
        if downsample is not None:
            self.downsample_bn = tnn.BatchNorm3d(planes * EXPANSION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = x if self.downsample is None else self.downsample_bn(self.downsample(x))
        return self.relu(out + res)


class TorchSlowFast(tnn.Module):
    """The reference `SlowFast(Bottleneck, layers, alpha, beta, fuse_only_conv, fuse_kernel_size,
    slow_full_span)`.

    Input NCTHW [B, 3, T, H, W]; returns [slow, fast] in NCTHW. Use `.eval()` (the reference freezes BN).
    """

    def __init__(self, layers: tuple[int, ...], *, width: int = 64, alpha: int = 8, beta: float = 0.125,
                 fuse_only_conv: bool = True, fuse_kernel_size: int = 5, slow_full_span: bool = False,
                 res5_dilation: int = 2, bn_eps: float = 1e-5):
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.slow_full_span = slow_full_span
        w = width

        self.fast_inplanes = int(w * beta)
        self.fast_conv1 = tnn.Conv3d(3, self.fast_inplanes, kernel_size=(5, 7, 7), stride=(1, 2, 2),
                                     padding=(2, 3, 3), bias=False)
        self.fast_bn1 = tnn.BatchNorm3d(self.fast_inplanes)
        self.fast_relu = tnn.ReLU()
        self.fast_maxpool = tnn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.fast_res1 = self._make_layer_fast(int(w * beta), layers[0], head_conv=3)
        self.fast_res2 = self._make_layer_fast(int(2 * w * beta), layers[1], stride=2, head_conv=3)
        self.fast_res3 = self._make_layer_fast(int(4 * w * beta), layers[2], stride=2, head_conv=3)
        self.fast_res4 = self._make_layer_fast(int(8 * w * beta), layers[3], head_conv=3,
                                               dilation=res5_dilation)

        self.slow_inplanes = w
        self.slow_conv1 = tnn.Conv3d(3, w, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3),
                                     bias=False)
        self.slow_bn1 = tnn.BatchNorm3d(w)
        self.slow_relu = tnn.ReLU()
        self.slow_maxpool = tnn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.slow_res1 = self._make_layer_slow(w, layers[0], head_conv=1)
        self.slow_res2 = self._make_layer_slow(2 * w, layers[1], stride=2, head_conv=1)
        self.slow_res3 = self._make_layer_slow(4 * w, layers[2], stride=2, head_conv=3)
        self.slow_res4 = self._make_layer_slow(8 * w, layers[3], head_conv=3, dilation=res5_dilation)

        kw = dict(kernel_size=(fuse_kernel_size, 1, 1), stride=(alpha, 1, 1),
                  padding=(fuse_kernel_size // 2, 0, 0), bias=False)

        def fuse(c_in: int, c_out: int) -> tnn.Module:
            if fuse_only_conv:
                return tnn.Conv3d(c_in, c_out, **kw)
            return tnn.Sequential(tnn.Conv3d(c_in, c_out, **kw), tnn.BatchNorm3d(c_out), tnn.ReLU())

        self.Tconv1 = fuse(int(w * beta), int(2 * w * beta))
        self.Tconv2 = fuse(int(4 * w * beta), int(8 * w * beta))
        self.Tconv3 = fuse(int(8 * w * beta), int(16 * w * beta))
        self.Tconv4 = fuse(int(16 * w * beta), int(32 * w * beta))
        for m in self.modules():
            if isinstance(m, tnn.BatchNorm3d):
                m.eps = bn_eps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        fast, laterals = self.FastPath(x)
        if self.slow_full_span:
            idx = torch.linspace(0, x.shape[2] - 1, x.shape[2] // self.alpha).long()
            slow_in = torch.index_select(x, 2, idx)
        else:
            slow_in = x[:, :, ::self.alpha]
        return [self.SlowPath(slow_in, laterals), fast]

    def SlowPath(self, x: torch.Tensor, laterals: list[torch.Tensor]) -> torch.Tensor:  # noqa: N802
        x = self.slow_maxpool(self.slow_relu(self.slow_bn1(self.slow_conv1(x))))
        for lateral, stage in zip(laterals, (self.slow_res1, self.slow_res2, self.slow_res3, self.slow_res4),
                                  strict=True):
            x = stage(torch.cat([x, lateral], dim=1))
        return x

    def FastPath(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # noqa: N802
        x = self.fast_maxpool(self.fast_relu(self.fast_bn1(self.fast_conv1(x))))
        laterals = []
        for tconv, stage in ((self.Tconv1, self.fast_res1), (self.Tconv2, self.fast_res2),
                             (self.Tconv3, self.fast_res3), (self.Tconv4, self.fast_res4)):
            laterals.append(tconv(x))
            x = stage(x)
        return x, laterals

    def _make_layer_fast(self, planes: int, blocks: int, stride: int = 1, head_conv: int = 1,
                         dilation: int = 1) -> tnn.Sequential:
        downsample = None
        if stride != 1 or self.fast_inplanes != planes * EXPANSION:
            downsample = tnn.Sequential(tnn.Conv3d(self.fast_inplanes, planes * EXPANSION, kernel_size=1,
                                                   stride=(1, stride, stride), bias=False))
        layers = [Bottleneck(self.fast_inplanes, planes, stride, downsample, dilation=dilation,
                             head_conv=head_conv)]
        self.fast_inplanes = planes * EXPANSION
        layers += [Bottleneck(self.fast_inplanes, planes, dilation=dilation, head_conv=head_conv)
                   for _ in range(1, blocks)]
        return tnn.Sequential(*layers)

    def _make_layer_slow(self, planes: int, blocks: int, stride: int = 1, head_conv: int = 1,
                         dilation: int = 1) -> tnn.Sequential:
        fused = self.slow_inplanes + int(self.slow_inplanes * self.beta) * 2
        downsample = None
        if stride != 1 or fused != planes * EXPANSION:
            downsample = tnn.Sequential(tnn.Conv3d(fused, planes * EXPANSION, kernel_size=1,
                                                   stride=(1, stride, stride), bias=False))
        layers = [Bottleneck(fused, planes, stride, downsample, dilation=dilation, head_conv=head_conv)]
        self.slow_inplanes = planes * EXPANSION
        layers += [Bottleneck(self.slow_inplanes, planes, dilation=dilation, head_conv=head_conv)
                   for _ in range(1, blocks)]
        return tnn.Sequential(*layers)


def from_backbone_config(cfg) -> TorchSlowFast:
    """The oracle for a `config.model.backbone` ConfigDict."""
    return TorchSlowFast(tuple(cfg.layers), width=int(cfg.width), alpha=int(cfg.alpha), beta=float(cfg.beta),
                         fuse_only_conv=bool(cfg.fuse_only_conv), fuse_kernel_size=int(cfg.fuse_kernel_size),
                         slow_full_span=bool(cfg.slow_full_span), res5_dilation=int(cfg.res5_dilation),
                         bn_eps=float(cfg.bn_eps))


def randomize_(model: tnn.Module, seed: int = 0) -> tnn.Module:
    """Random conv weights and random BN affine and running statistics, so parity exercises every term.

    The last BN of each residual branch (bn3) gets a small scale, as in a trained ResNet, so activations stay
    O(1..10) through 33 blocks and an absolute tolerance means something.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, tnn.Conv3d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, tnn.BatchNorm3d):
                n = m.num_features
                low, span = (0.1, 0.2) if name.endswith("bn3") else (0.5, 1.0)
                m.weight.copy_(low + span * torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model.eval()


# Torch state-dict key -> NNX path: module renames (regex, replacement) applied in order, then the leaf name.
MODULE_RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.downsample\.0$", ".downsample"),      # reference downsample is nn.Sequential(conv)
    (r"^(Tconv\d)\.0$", r"\1.conv"),          # conv + BN + ReLU fusion: Sequential index 0 / 1
    (r"^(Tconv\d)\.1$", r"\1.bn"),
    (r"^(Tconv\d)$", r"\1.conv"),             # conv-only fusion: the conv is the Tconv itself
)
CONV_LEAF = {"weight": "kernel"}
BN_LEAF = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def torch_conv_to_flax(w: np.ndarray) -> np.ndarray:
    """(out, in, kt, kh, kw) -> (kt, kh, kw, in, out)."""
    return np.transpose(w, (2, 3, 4, 1, 0))


def torch_key_to_nnx_path(key: str, ndim: int
                          ) -> tuple[tuple[str | int, ...], Callable[[np.ndarray], np.ndarray]]:
    """Maps one torch key (and its tensor rank) to an NNX state path and the array transform to apply."""
    module, leaf = key.rsplit(".", 1)
    for pattern, repl in MODULE_RENAMES:
        module = re.sub(pattern, repl, module)
    is_conv = ndim == 5
    table = CONV_LEAF if is_conv else BN_LEAF
    if leaf not in table:
        raise KeyError(f"state_dict key {key!r}: no rule for leaf {leaf!r} of a {ndim}-D tensor")
    parts = tuple(int(p) if p.isdigit() else p for p in module.split(".")) + (table[leaf],)
    return parts, (torch_conv_to_flax if is_conv else (lambda a: a))


def load_torch_state_dict(module: nnx.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copies a reference SlowFast state dict into the Flax module; every NNX array is written exactly once.

    The module may be abstract (`nnx.eval_shape(lambda: SlowFast(...))`): no random init is computed then.
    """
    state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
    flat = dict(nnx.to_flat_state(state))
    written = set()
    for key, tensor in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        path, transform = torch_key_to_nnx_path(key, tensor.ndim)
        if path not in flat:
            raise KeyError(f"state_dict key {key!r} -> {path}: not in the Flax module")
        value = transform(tensor.detach().cpu().numpy())
        target = flat[path].get_value()  # an array, or a ShapeDtypeStruct for a module made by nnx.eval_shape
        if value.shape != target.shape:
            raise ValueError(f"state_dict key {key!r}: shape {value.shape} != Flax {target.shape}")
        flat[path].set_value(jnp.asarray(value, target.dtype))
        written.add(path)
    missing = set(flat) - written
    if missing:
        raise KeyError(f"Flax arrays not covered by the state dict: {sorted(map(str, missing))[:5]}")
    nnx.update(module, nnx.from_flat_state(flat))


def torch_param_count(model: tnn.Module) -> int:
    """The reference's count: sum(p.numel() for p in model.parameters())."""
    return int(sum(p.numel() for p in model.parameters()))
