"""PyTorch oracle of the ACFB head, written from the paper's description on top of the verified ACAR oracle.

One keyframe at a time, unpadded: the current clip's first-order maps are the ACAR oracle's (conv1 on
[context crop, actor], ReLU, conv2, ReLU) with no downsampling; each block is the ACAR oracle's HR2O_NL with its
keys and values computed from the keyframe's bank window (a tensor [m, D, h, w] holding only real entries,
cropped to the clip's grid) instead of from the current maps. Two blocks stacked, the same bank in both;
classifier as ACAR's. `BankNL` with `bank = x` is HR2O_NL exactly, which the tests check.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as tnn

from acar_jax.interop.torch_reference.heads import HR2O_NL, TorchACARHead, classify, reduced_features, run_packed


class BankNL(HR2O_NL):
    """HR2O_NL whose keys and values come from a fixed bank [m, D, h, w] of the same grid as x [n, D, h, w]."""

    def forward(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if bank.shape[0] == 0:  # an empty window: the block passes its input through
            return x
        query = self.conv_q(x).unsqueeze(1)                 # [n, 1, D, h, w]
        key = self.conv_k(bank).unsqueeze(0)                # [1, m, D, h, w]
        att = torch.softmax((query * key).sum(2) / (self.hidden_dim ** 0.5), dim=1)   # [n, m, h, w]
        virt = (att.unsqueeze(2) * self.conv_v(bank).unsqueeze(0)).sum(1)
        virt = self.dp(self.conv(torch.relu(self.norm(virt))))
        return x + virt


class TorchACFBHead(TorchACARHead):
    """ACAR oracle's encoder without downsampling + `depth` BankNL blocks + ACAR's classifier."""

    def __init__(self, width: int, roi_spatial: int = 7, num_classes: int = 60, dropout: float = 0.0,
                 reduce_dim: int = 1024, hidden_dim: int = 512, depth: int = 2, kernel_size: int = 3,
                 mlp_1x1: bool = False, hr2o_dropout: float = 0.2):
        super().__init__(width, roi_spatial, num_classes, dropout, reduce_dim, hidden_dim, "none", 0,
                         kernel_size, mlp_1x1, hr2o_dropout)
        self.hr2o = tnn.ModuleList([BankNL(hidden_dim, kernel_size, mlp_1x1, hr2o_dropout) for _ in range(depth)])

    def first_order(self, features: list[torch.Tensor], rois: torch.Tensor, roi_ids: list[int],
                    sizes_before_padding: list[tuple[float, float]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(actor features [R, reduce], per clip its first-order maps [n, D, eff_h - 2, eff_w - 2])."""
        h, w = features[0].shape[3:]
        feats, roi_feats = reduced_features(self, features, rois)
        maps = []
        for idx in range(feats.shape[0]):
            n_rois = roi_ids[idx + 1] - roi_ids[idx]
            eff_h = math.ceil(h * sizes_before_padding[idx][1])
            eff_w = math.ceil(w * sizes_before_padding[idx][0])
            bg = feats[idx][:, :eff_h, :eff_w].unsqueeze(0).repeat((n_rois, 1, 1, 1))
            actor = roi_feats[roi_ids[idx]:roi_ids[idx + 1]].unsqueeze(2).unsqueeze(2).expand_as(bg)
            x = torch.relu(self.conv1(torch.cat([bg, actor], dim=1)))
            maps.append(torch.relu(self.conv2(x)))
        return roi_feats, maps

    def forward(self, features, rois, roi_ids, sizes_before_padding, banks: list[torch.Tensor]):  # type: ignore
        roi_feats, maps = self.first_order(features, rois, roi_ids, sizes_before_padding)
        high_order = []
        for x, bank in zip(maps, banks, strict=True):
            if x.shape[0] == 0:
                continue
            for block in self.hr2o:
                x = block(x, bank)
            high_order.append(self.gap(x))
        return classify(self, roi_feats, torch.cat(high_order, 0).view(rois.shape[0], -1))


def run_acfb_oracle(head: TorchACFBHead, slow: torch.Tensor, fast: torch.Tensor, boxes: np.ndarray,
                    box_mask: np.ndarray, valid_hw: np.ndarray, padded_hw: tuple[int, int],
                    banks: list[torch.Tensor]) -> torch.Tensor:
    """Our padded batch + one unpadded bank [m_b, D, h_b, w_b] per clip -> [B, N, K] (zeros in padded slots)."""
    return run_packed(head, boxes, box_mask, valid_hw, padded_hw,
                      lambda rois, roi_ids, sizes: head([slow, fast], rois, roi_ids, sizes, banks))
