"""PyTorch oracle of the LFB-style head (acar_jax/models/lfb_head.py), written from LFB's FBO non-local description
on top of the verified ACAR oracle's actor features.

One keyframe at a time, unpadded: actor features as the ACAR oracle computes them (conv_reduce on the padded map,
torchvision RoIAlign, max pool); S = st_proj(actors), L = lt_proj(the keyframe's real bank entries [m, R]);
each block: softmax over the m entries of theta(S) phi(L)^T / sqrt(D), times g(L), LayerNorm over channels,
ReLU, out, dropout, residual; an empty window passes S through. Classifier: fc2([ReLU(fc1(actors)), S]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as tnn

from acar_jax.interop.torch_reference.heads import classify, reduced_features, run_packed


class FeatureBankNL(tnn.Module):
    def __init__(self, dim: int, dropout: float = 0.2):
        super().__init__()
        self.dim = dim
        self.theta = tnn.Linear(dim, dim, bias=False)
        self.phi = tnn.Linear(dim, dim, bias=False)
        self.g = tnn.Linear(dim, dim, bias=False)
        self.norm = tnn.LayerNorm(dim, eps=1e-5)
        self.out = tnn.Linear(dim, dim, bias=False)
        self.dp = tnn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """x [n, D] (one keyframe's actors), bank [m, D] (its window's real entries) -> [n, D]."""
        if bank.shape[0] == 0:
            return x
        att = torch.softmax(self.theta(x) @ self.phi(bank).t() / self.dim ** 0.5, dim=1)     # [n, m]
        y = self.dp(self.out(torch.relu(self.norm(att @ self.g(bank)))))
        return x + y


class TorchLFBHead(tnn.Module):
    def __init__(self, width: int, roi_spatial: int = 7, num_classes: int = 60, dropout: float = 0.0,
                 reduce_dim: int = 1024, hidden_dim: int = 512, depth: int = 2, hr2o_dropout: float = 0.2):
        super().__init__()
        self.roi_spatial = roi_spatial
        self.roi_maxpool = tnn.MaxPool2d(roi_spatial)
        self.conv_reduce = tnn.Conv2d(width, reduce_dim, 1, bias=False)
        self.st_proj = tnn.Linear(reduce_dim, hidden_dim, bias=False)
        self.lt_proj = tnn.Linear(reduce_dim, hidden_dim, bias=False)
        self.proj_dp = tnn.Dropout(hr2o_dropout)
        self.fbo = tnn.ModuleList([FeatureBankNL(hidden_dim, hr2o_dropout) for _ in range(depth)])
        self.fc1 = tnn.Linear(reduce_dim, hidden_dim, bias=False)
        self.fc2 = tnn.Linear(hidden_dim * 2, num_classes, bias=False)
        self.dp = tnn.Dropout(dropout) if dropout > 0 else None

    def actor_features(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        return reduced_features(self, features, rois)[1]

    def forward(self, features, rois, roi_ids, banks: list[torch.Tensor]) -> torch.Tensor:
        """banks: per clip its real entries [m_b, R] (m_b may be 0)."""
        actors = self.actor_features(features, rois)
        out = []
        for idx, bank in enumerate(banks):
            own = actors[roi_ids[idx]:roi_ids[idx + 1]]
            if own.shape[0] == 0:
                continue
            x = self.proj_dp(self.st_proj(own))
            long_term = self.proj_dp(self.lt_proj(bank))
            for block in self.fbo:
                x = block(x, long_term)
            out.append(x)
        return classify(self, actors, torch.cat(out, 0))


def run_lfb_oracle(head: TorchLFBHead, slow: torch.Tensor, fast: torch.Tensor, boxes: np.ndarray,
                   box_mask: np.ndarray, valid_hw: np.ndarray, padded_hw: tuple[int, int],
                   banks: list[torch.Tensor]) -> torch.Tensor:
    """Our padded batch + one unpadded bank [m_b, R] per clip -> [B, N, K] (zeros in padded slots)."""
    return run_packed(head, boxes, box_mask, valid_hw, padded_hw,
                      lambda rois, roi_ids, _sizes: head([slow, fast], rois, roi_ids, banks))
