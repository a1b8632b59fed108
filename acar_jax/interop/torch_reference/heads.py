"""PyTorch oracle of ACAR-Net's heads (models/heads/acar.py, linear.py), plus the weight copy into Flax.

Written from the reference's semantics: module tree and attribute names are the reference's, RoIAlign runs on
the FULL padded map (torchvision, boxes divided by the pad ratio then multiplied by the feature size), the
context map is cropped per clip to `ceil(h * valid / padded)`, and a Python loop over the clips runs the
actor-context encoder and HR2O on each clip's real actors only. `run_oracle` turns our padded batch
(`boxes [B, N, 4]`, `box_mask`, `valid_hw`) into the reference's packed `rois` / `roi_ids` /
`sizes_before_padding` and scatters the outputs back to `[B, N, K]` (zeros for padded slots).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn as tnn
import torchvision
from flax import nnx


class HR2O_NL(tnn.Module):  # noqa: N801 (the reference's name)
    """The reference's HR2O_NL: attention over the actors of one clip, per location."""

    def __init__(self, hidden_dim: int = 512, kernel_size: int = 3, mlp_1x1: bool = False, dropout: float = 0.2):
        super().__init__()
        self.hidden_dim = hidden_dim
        padding = kernel_size // 2
        self.conv_q = tnn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding, bias=False)
        self.conv_k = tnn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding, bias=False)
        self.conv_v = tnn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding, bias=False)
        self.conv = tnn.Conv2d(hidden_dim, hidden_dim, 1 if mlp_1x1 else kernel_size,
                               padding=0 if mlp_1x1 else padding, bias=False)
        self.norm = tnn.GroupNorm(1, hidden_dim, affine=True)
        self.dp = tnn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.conv_q(x).unsqueeze(1)
        key = self.conv_k(x).unsqueeze(0)
        att = torch.softmax((query * key).sum(2) / (self.hidden_dim ** 0.5), dim=1)
        virt = (att.unsqueeze(2) * self.conv_v(x)).sum(1)
        virt = self.dp(self.conv(torch.relu(self.norm(virt))))
        return x + virt


class TorchACARHead(tnn.Module):
    """The reference's ACARHead; `forward(features, rois, roi_ids, sizes_before_padding)`."""

    def __init__(self, width: int, roi_spatial: int = 7, num_classes: int = 60, dropout: float = 0.0,
                 reduce_dim: int = 1024, hidden_dim: int = 512, downsample: str = "max2x2", depth: int = 2,
                 kernel_size: int = 3, mlp_1x1: bool = False, hr2o_dropout: float = 0.2):
        super().__init__()
        self.roi_spatial = roi_spatial
        self.roi_maxpool = tnn.MaxPool2d(roi_spatial)
        self.conv_reduce = tnn.Conv2d(width, reduce_dim, 1, bias=False)
        self.conv1 = tnn.Conv2d(reduce_dim * 2, hidden_dim, 1, bias=False)
        self.conv2 = tnn.Conv2d(hidden_dim, hidden_dim, 3, bias=False)
        self.downsample = tnn.Identity() if downsample == "none" else tnn.MaxPool2d(3, stride=2, padding=1)
        self.hr2o = tnn.Sequential(*[HR2O_NL(hidden_dim, kernel_size, mlp_1x1, hr2o_dropout)
                                     for _ in range(depth)])
        self.gap = tnn.AdaptiveAvgPool2d(1)
        self.fc1 = tnn.Linear(reduce_dim, hidden_dim, bias=False)
        self.fc2 = tnn.Linear(hidden_dim * 2, num_classes, bias=False)
        self.dp = tnn.Dropout(dropout) if dropout > 0 else None

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor, roi_ids: list[int],
                sizes_before_padding: list[tuple[float, float]]) -> torch.Tensor:
        h, w = features[0].shape[3:]
        feats, roi_feats = reduced_features(self, features, rois)
        high_order = []
        for idx in range(feats.shape[0]):  # the reference's loop over the clips
            n_rois = roi_ids[idx + 1] - roi_ids[idx]
            if n_rois == 0:
                continue
            eff_h = math.ceil(h * sizes_before_padding[idx][1])
            eff_w = math.ceil(w * sizes_before_padding[idx][0])
            bg = feats[idx][:, :eff_h, :eff_w].unsqueeze(0).repeat((n_rois, 1, 1, 1))
            actor = roi_feats[roi_ids[idx]:roi_ids[idx + 1]].unsqueeze(2).unsqueeze(2).expand_as(bg)
            x = torch.relu(self.conv1(torch.cat([bg, actor], dim=1)))
            x = torch.relu(self.conv2(x))
            x = self.hr2o(self.downsample(x))
            high_order.append(self.gap(x))
        return classify(self, roi_feats, torch.cat(high_order, 0).view(rois.shape[0], -1))


def scaled_rois(rois: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """rois [R, 5] (clip, x1, y1, x2, y2 normalised to the padded frame) -> in feature pixels of an h x w map."""
    rois = rois.clone()
    rois[:, 1] *= w
    rois[:, 2] *= h
    rois[:, 3] *= w
    rois[:, 4] *= h
    return rois


def reduced_features(head: tnn.Module, features: list[torch.Tensor], rois: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ACAR head's context and actor features: (conv_reduce of the time-averaged pathways [B, R, h, w],
    RoIAlign + max pool of it per RoI [num_rois, R])."""
    h, w = features[0].shape[3:]
    feats = torch.cat([tnn.AdaptiveAvgPool3d((1, h, w))(f).view(-1, f.shape[1], h, w) for f in features], 1)
    feats = head.conv_reduce(feats)
    roi_feats = torchvision.ops.roi_align(feats, scaled_rois(rois, h, w).detach(), (head.roi_spatial, head.roi_spatial))
    return feats, head.roi_maxpool(roi_feats).view(rois.shape[0], -1)


def classify(head: tnn.Module, actors: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
    """ACAR's classifier: fc2(dropout([ReLU(fc1(actor features)), pooled relations]))."""
    out = torch.cat([torch.relu(head.fc1(actors)), relations], dim=1)
    if head.dp is not None:
        out = head.dp(out)
    return head.fc2(out)


class TorchLinearHead(tnn.Module):
    """The reference's LinearHead: per-pathway RoIAlign + max pool, concat, dropout, fc."""

    def __init__(self, width: int, roi_spatial: int = 7, num_classes: int = 60, dropout: float = 0.0):
        super().__init__()
        self.roi_spatial = roi_spatial
        self.roi_maxpool = tnn.MaxPool2d(roi_spatial)
        self.fc = tnn.Linear(width, num_classes, bias=False)
        self.dp = tnn.Dropout(dropout) if dropout > 0 else None

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor, roi_ids: list[int],
                sizes_before_padding: list[tuple[float, float]]) -> torch.Tensor:
        del roi_ids, sizes_before_padding
        out = []
        for f in features:
            c, (h, w) = f.shape[1], f.shape[3:]
            feats = tnn.AdaptiveAvgPool3d((1, h, w))(f).view(-1, c, h, w)
            pooled = torchvision.ops.roi_align(feats, scaled_rois(rois, h, w).detach(),
                                               (self.roi_spatial, self.roi_spatial))
            out.append(self.roi_maxpool(pooled).view(-1, c))
        out = torch.cat(out, dim=1)
        if self.dp is not None:
            out = self.dp(out)
        return self.fc(out)


def from_model_config(model_config, width: int) -> tnn.Module:
    """The oracle head for `config.model` on a `width`-channel backbone."""
    head, k = model_config.head, int(model_config.num_classes)
    if head.type == "linear":
        return TorchLinearHead(width, int(head.roi_spatial), k, float(head.dropout))
    return TorchACARHead(width, int(head.roi_spatial), k, float(head.dropout), int(head.reduce_dim),
                         int(head.hidden_dim), str(head.downsample), int(head.depth), int(head.kernel_size),
                         bool(head.mlp_1x1), float(head.hr2o_dropout))


def randomize_(model: tnn.Module, seed: int = 0) -> tnn.Module:
    """Random weights (torch's default scale) and random GroupNorm affine, so parity exercises every term."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (tnn.Conv2d, tnn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * (3.0 / fan_in) ** 0.5)
            elif isinstance(m, tnn.GroupNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def pack_batch(boxes: np.ndarray, box_mask: np.ndarray, valid_hw: np.ndarray, padded_hw: tuple[int, int]
               ) -> tuple[torch.Tensor, list[int], list[tuple[float, float]], np.ndarray]:
    """Our padded batch -> the reference's (rois [R, 5] normalised to the padded frame, roi_ids, sizes
    (w, h) before padding as fractions, and the flat indices of the real slots in [B * N])."""
    rows, roi_ids, sizes = [], [0], []
    big_h, big_w = padded_hw
    for b in range(boxes.shape[0]):
        vh, vw = int(valid_hw[b, 0]), int(valid_hw[b, 1])
        pad_ratio = np.array([big_w / vw, big_h / vh, big_w / vw, big_h / vh])  # the reference's pad_ratio
        for n in np.flatnonzero(box_mask[b]):
            rows.append([b, *(boxes[b, n].astype(np.float64) / pad_ratio)])
        roi_ids.append(len(rows))
        sizes.append((vw / big_w, vh / big_h))
    rois = torch.tensor(np.array(rows, np.float32).reshape(-1, 5))
    return rois, roi_ids, sizes, np.flatnonzero(box_mask.reshape(-1))


def run_packed(head: tnn.Module, boxes: np.ndarray, box_mask: np.ndarray, valid_hw: np.ndarray,
               padded_hw: tuple[int, int], forward: Callable[..., torch.Tensor]) -> torch.Tensor:
    """forward(rois, roi_ids, sizes) -> [num_rois, K] on our padded batch, scattered back to [B, N, K] (zeros in
    padded slots)."""
    b, n = box_mask.shape
    rois, roi_ids, sizes, flat = pack_batch(boxes, box_mask, valid_hw, padded_hw)
    k = (head.fc2 if hasattr(head, "fc2") else head.fc).out_features
    if len(flat) == 0:
        return torch.zeros(b, n, k)
    out = forward(rois, roi_ids, sizes)
    full = torch.zeros(b * n, k, dtype=out.dtype).index_copy(0, torch.from_numpy(flat), out)
    return full.view(b, n, k)


def run_oracle(head: tnn.Module, slow: torch.Tensor, fast: torch.Tensor, boxes: np.ndarray, box_mask: np.ndarray,
               valid_hw: np.ndarray, padded_hw: tuple[int, int]) -> torch.Tensor:
    """slow/fast NCTHW torch tensors + our padded boxes -> [B, N, K] (zeros in padded slots)."""
    return run_packed(head, boxes, box_mask, valid_hw, padded_hw,
                      lambda rois, roi_ids, sizes: head([slow, fast], rois, roi_ids, sizes))


def torch_key_to_nnx_path(key: str) -> tuple[str | int, ...]:
    """'hr2o.0.conv_q.weight' -> ('hr2o', 0, 'conv_q', 'kernel'); GroupNorm weight/bias -> scale/bias."""
    module, leaf = key.rsplit(".", 1)
    parts = tuple(int(p) if p.isdigit() else p for p in module.split("."))
    is_norm = parts[-1] == "norm"
    return (*parts, {"weight": "scale" if is_norm else "kernel", "bias": "bias"}[leaf])


def torch_to_flax(value: np.ndarray) -> np.ndarray:
    """Conv2d [out, in, kh, kw] -> (kh, kw, in, out); Linear [out, in] -> (in, out); 1-D unchanged."""
    if value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if value.ndim == 2:
        return value.T
    return value


def load_head_state_dict(module: nnx.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copies a reference head state dict into the Flax head; every Flax array is written exactly once."""
    flat = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    written = set()
    for key, tensor in state_dict.items():
        path = torch_key_to_nnx_path(key)
        if path not in flat:
            raise KeyError(f"state_dict key {key!r} -> {path}: not in the Flax head")
        value = torch_to_flax(tensor.detach().cpu().numpy())
        target = flat[path].get_value()
        if value.shape != target.shape:
            raise ValueError(f"state_dict key {key!r}: shape {value.shape} != Flax {target.shape}")
        flat[path].set_value(jnp.asarray(value, target.dtype))
        written.add(path)
    if set(flat) - written:
        raise KeyError(f"Flax arrays not covered by the state dict: {sorted(map(str, set(flat) - written))[:5]}")
    nnx.update(module, nnx.from_flat_state(flat))


def flax_grads_to_torch_layout(flat_grads: Mapping[tuple, np.ndarray], key: str) -> np.ndarray:
    """The Flax gradient of the array named by a torch key, in the torch layout."""
    g = np.asarray(flat_grads[torch_key_to_nnx_path(key)])
    if g.ndim == 4:
        return np.transpose(g, (3, 2, 0, 1))
    if g.ndim == 2:
        return g.T
    return g
