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
import ml_collections
import numpy as np
from flax import nnx

from acar_jax.core.batch import check_array
from acar_jax.models.acar_head import actor_features
from acar_jax.models.head_layers import (
    Conv2d,
    Linear,
    check_head_inputs,
    common_head_kwargs,
    dropout_layer,
    relation_classifier,
)


class FeatureBankNL(nnx.Module):
    """One FBO non-local block: queries from the current actors, keys and values from the bank entries."""

    def __init__(self, dim: int, *, dropout: float, dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        self.dim = int(dim)
        self.theta = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.phi = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.g = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.norm = nnx.LayerNorm(dim, epsilon=1e-5, dtype=jnp.float32, rngs=rngs)
        self.out = Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.dp = dropout_layer(dropout, rngs)

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

    type_name = "lfb"
    reads_bank = True   # the detector passes each clip's bank window (bank, bank_mask) to this head

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
        self.proj_dp = dropout_layer(hr2o_dropout, rngs)
        self.fbo = nnx.List([FeatureBankNL(hidden_dim, dropout=hr2o_dropout, dtype=dtype, rngs=rngs)
                             for _ in range(depth)])
        self.fc1 = Linear(reduce_dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden_dim * 2, num_classes, dtype=dtype, rngs=rngs)
        self.dp = dropout_layer(dropout, rngs)

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

    @classmethod
    def from_config(cls, head_config: ml_collections.ConfigDict, width: int, num_classes: int, *,
                    dtype: jnp.dtype, rngs: nnx.Rngs) -> LFBHead:
        h = head_config
        return cls(width, num_classes, reduce_dim=int(h.reduce_dim), hidden_dim=int(h.hidden_dim),
                   depth=int(h.depth), hr2o_dropout=float(h.hr2o_dropout), **common_head_kwargs(h), dtype=dtype,
                   rngs=rngs)
