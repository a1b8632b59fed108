"""LFB-style comparison head: a long-term bank of actor RoI features only (no actor-context map), read by the
non-local feature bank operator of LFB (Wu et al., "Long-Term Feature Banks", FBO NL), on padded batches.

It isolates what ACFB's bank adds: the same trained ACAR model fills the bank, the same window is read, but each
entry is the actor's RoI feature (ACAR's `conv_reduce` map, RoIAlign, max: [R]) instead of its first-order map.
  S = dropout(st_proj(actor)), L = dropout(lt_proj(bank entries))          [N, D], [M, D]
  per block (`depth`, 2 as LFB): y = softmax_M(theta(S) phi(L)^T / sqrt(D)) g(L); y = ReLU(LayerNorm(y));
                                 S = S + dropout(out(y))                   (every block reads the same L)
  logits = ACAR's classifier on [ReLU(fc1(actor)), S]
Masked entries are zeroed before the projections and excluded from the softmax; a clip whose window has no
entry leaves S unchanged. Layers are bias-free like the project's other heads (LayerNorm keeps its affine).
Entries are stored as [1, 1, R] maps, so bank files and windows are ACFB's, with a 1x1 grid (a flip changes
nothing). `conv_reduce`, `fc1`, `fc2` carry ACAR's names and shapes, so an ACAR checkpoint initialises them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from acar_jax.batch import check_array
from acar_jax.models.acfb import ACFBHead
from acar_jax.models.heads import (
    ACARHead,
    Conv2d,
    Linear,
    _dropout,
    _time_average,
    check_head_inputs,
    relation_classifier,
    roi_features,
)


def actor_features(head: nnx.Module, slow: jax.Array, fast: jax.Array, boxes: jax.Array, valid_hw: jax.Array,
                   padded_hw: tuple[int, int]) -> jax.Array:
    """ACAR's actor feature: RoIAlign + max over `head.conv_reduce` of the time-averaged pathways -> [B, N, R]."""
    feats = jnp.concatenate([_time_average(slow, "slow"), _time_average(fast, "fast")], axis=-1)
    return roi_features(head.conv_reduce(feats), boxes, valid_hw, padded_hw, head.roi_spatial,
                        head.roi_sampling_ratio)


class FeatureBankNL(nnx.Module):
    """One FBO non-local block: queries from the current actors, keys and values from the bank entries."""

    def __init__(self, dim: int, *, dropout: float, dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        self.dim = int(dim)
        self.theta = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.phi = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.g = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.norm = nnx.LayerNorm(dim, epsilon=1e-5, dtype=jnp.float32, rngs=rngs)
        self.out = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.dp = _dropout(dropout, rngs)

    def __call__(self, x: jax.Array, bank: jax.Array, bank_mask: jax.Array, *, train: bool) -> jax.Array:
        """x [B, N, D], bank [B, M, D] (zero in masked slots), bank_mask [B, M] -> [B, N, D]."""
        att = jnp.einsum("bnc,bmc->bnm", self.theta(x).astype(jnp.float32), self.phi(bank).astype(jnp.float32))
        att = att / (self.dim ** 0.5)
        att = jax.nn.softmax(jnp.where(bank_mask[:, None, :], att, jnp.finfo(jnp.float32).min), axis=-1)
        y = jnp.einsum("bnm,bmc->bnc", att, self.g(bank).astype(jnp.float32))
        y = self.dp(self.out(jax.nn.relu(self.norm(y))), deterministic=not train)
        has_keys = jnp.any(bank_mask, axis=1)[:, None, None]
        return jnp.where(has_keys, x + y.astype(x.dtype), x)


class LFBHead(nnx.Module):
    """ACAR's actor features + `depth` FBO non-local blocks over a bank of actor features + ACAR's classifier."""

    reads_bank = True

    def __init__(self, width: int, num_classes: int, *, roi_spatial: int = 7, dropout: float = 0.0,
                 reduce_dim: int = 1024, hidden_dim: int = 512, depth: int = 2, hr2o_dropout: float = 0.2,
                 roi_sampling_ratio: int = -1, dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        if depth < 1:
            raise ValueError(f"model.head.depth: the LFB head needs >= 1 feature bank block, got {depth}")
        self.roi_spatial = int(roi_spatial)
        self.roi_sampling_ratio = int(roi_sampling_ratio)
        self.reduce_dim = int(reduce_dim)
        self.conv_reduce = Conv2d(width, reduce_dim, 1, dtype=dtype, rngs=rngs)
        self.st_proj = Linear(reduce_dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.lt_proj = Linear(reduce_dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.proj_dp = _dropout(hr2o_dropout, rngs)
        self.fbo = nnx.List([FeatureBankNL(hidden_dim, dropout=hr2o_dropout, dtype=dtype, rngs=rngs)
                             for _ in range(depth)])
        self.fc1 = Linear(reduce_dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden_dim * 2, num_classes, dtype=dtype, rngs=rngs)
        self.dp = _dropout(dropout, rngs)

    def __call__(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                 valid_hw: jax.Array, padded_hw: tuple[int, int], bank: jax.Array, bank_mask: jax.Array, *,
                 train: bool = False) -> jax.Array:
        """slow/fast [B, T, h, w, C], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2], bank [B, M, 1, 1, R]
        (actor features), bank_mask [B, M] -> logits [B, N, K] (zero for padded boxes)."""
        check_head_inputs(slow, fast, boxes, box_mask, valid_hw, padded_hw)
        b = slow.shape[0]
        check_array(bank, "bank", "[B, M, 1, 1, R] actor features (bank.content 'actors')",
                    (b, None, 1, 1, self.reduce_dim), np.floating)
        check_array(bank_mask, "bank_mask", "[B, M]", tuple(bank.shape[:2]), np.bool_)
        actors = actor_features(self, slow, fast, boxes, valid_hw, padded_hw)
        entries = jnp.where(bank_mask[:, :, None], bank[:, :, 0, 0].astype(jnp.float32), 0.0)
        x = self.proj_dp(self.st_proj(actors), deterministic=not train)
        long_term = self.proj_dp(self.lt_proj(entries), deterministic=not train)
        for block in self.fbo:
            x = block(x, long_term, bank_mask, train=train)
        ones = jnp.ones((b, 1, 1), jnp.float32)           # the classifier's pool over a 1x1 "map" is the identity
        return relation_classifier(self, actors, x[:, :, None, None, :], ones, box_mask, train=train)


def detector_bank_actors(model: nnx.Module, clips: jax.Array, boxes: jax.Array, valid_hw: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
    """A trained ACAR detector's LFB-style bank entries for a batch: (actor features [B, N, 1, 1, R] float32,
    crop [B, 2] of ones: the 1x1 grid every entry sits on)."""
    if not isinstance(model.head, ACARHead) or isinstance(model.head, ACFBHead):
        raise ValueError(f"bank extraction needs a detector with an ACAR head (model.head.type='acar'), got "
                         f"{type(model.head).__name__}")
    slow, fast = model.backbone(clips)
    feats = actor_features(model.head, slow, fast, boxes, valid_hw, tuple(clips.shape[2:4]))
    return feats[:, :, None, None, :].astype(jnp.float32), jnp.ones((clips.shape[0], 2), jnp.int32)
