"""ACFB: the actor-context feature bank head (ACAR's HR2O with long-term keys and values), on padded batches.

A trained ACAR model, run every 1 s over a video, leaves for every (keyframe, actor) its first-order
actor-context map: ReLU(conv2(ReLU(conv1([context, actor])))), BEFORE the ACAR head's spatial downsampling
(`first_order_maps`). The ACFB head computes the current clip's maps the same way (no 2x2 max pool), then runs
two stacked relation blocks in which the attention is between the current and the long-term relations: at
every location (x, y), the queries are the current actors' maps, the keys and values are the FIXED bank maps of
the window around the keyframe (the same bank in both blocks; the current keyframe's own entries are in it).
The rest is ACAR's: residual, GroupNorm, ReLU, output conv, dropout; average pool; classifier on
[ReLU(fc1(actor)), pooled].

Static shapes: a batch carries `bank [B, M, h', w', D]` with `bank_mask [B, M]` (M window slots: keyframes x
actors, flattened; padded slots masked). Masked slots are zeroed before the convs and masked out of the
softmax, so their contents (even inf/nan) change nothing. A clip whose window has no entry at all leaves the
block's input unchanged (the input pipeline rejects such windows for clips with actors; padded clips have
none). Bank maps sit on the current clip's grid: same video, same frame size, same scale, cropped to the same
effective size; outside the crop they are zeroed here, as the current maps are.

Parameter names: `conv_reduce, conv1, conv2, hr2o[i].conv_q/conv_k/conv_v/conv/norm, fc1, fc2` are ACAR's, so
an ACAR checkpoint's head initialises an ACFB head of the same sizes one to one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from acar_jax.core.batch import check_array
from acar_jax.models.acar_head import HR2O, ACARHead, first_order_maps
from acar_jax.models.head_layers import check_head_inputs, common_head_kwargs, relation_classifier, spatial_mask


def flip_maps(maps: jax.Array, eff_w: jax.Array) -> jax.Array:
    """Horizontal flip of maps [B, M, h, w, D] within each clip's crop width eff_w [B] (columns >= eff_w stay).

    A horizontally flipped training clip has its crop mirrored; its bank maps must be mirrored the same way so
    that location (x, y) of the bank still faces location (x, y) of the current maps.
    """
    w = maps.shape[3]
    col = jnp.arange(w)[None, :]
    src = jnp.where(col < eff_w[:, None], eff_w[:, None] - 1 - col, col)          # [B, w]
    return jnp.take_along_axis(maps, src[:, None, None, :, None], axis=3)


class BankRelation(HR2O):
    """One ACFB block: HR2O with queries from the current maps, keys and values from the bank maps."""

    def __call__(self, x: jax.Array, bank: jax.Array, spatial_mask: jax.Array, bank_mask: jax.Array, *,
                 train: bool) -> jax.Array:
        """x [B, N, h, w, D], bank [B, M, h, w, D], spatial_mask [B, h, w], bank_mask [B, M] -> like x."""
        m = spatial_mask[:, None, :, :, None]
        keep = bank_mask[:, :, None, None, None] & (m > 0)
        bank = jnp.where(keep, bank, 0.0).astype(x.dtype)
        query, key, value = self.conv_q(x), self.conv_k(bank), self.conv_v(bank)
        att = jnp.einsum("bihwc,bjhwc->bijhw", query.astype(jnp.float32), key.astype(jnp.float32))
        att = att / (self.hidden_dim ** 0.5)
        att = jnp.where(bank_mask[:, None, :, None, None], att, jnp.finfo(jnp.float32).min)
        att = jax.nn.softmax(att, axis=2)
        virt = jnp.einsum("bijhw,bjhwc->bihwc", att, value.astype(jnp.float32))
        virt = jax.nn.relu(self.norm(virt, spatial_mask[:, None]))
        virt = self.dp(self.conv(virt * m), deterministic=not train)
        has_keys = jnp.any(bank_mask, axis=1)[:, None, None, None, None]
        return jnp.where(has_keys, (x + virt.astype(x.dtype)) * m, x)


class ACFBHead(ACARHead):
    """ACAR's actor-context encoder (no downsampling) + `depth` bank relation blocks + ACAR's classifier."""

    type_name = "acfb"
    reads_bank = True   # the detector passes each clip's bank window (bank, bank_mask) to this head

    def __init__(self, width: int, num_classes: int, *, roi_spatial: int = 7, dropout: float = 0.0,
                 reduce_dim: int = 1024, hidden_dim: int = 512, depth: int = 2, kernel_size: int = 3,
                 mlp_1x1: bool = False, hr2o_dropout: float = 0.2, roi_sampling_ratio: int = -1,
                 dtype: jnp.dtype | str = jnp.float32, rngs: nnx.Rngs):
        super().__init__(width, num_classes, roi_spatial=roi_spatial, dropout=dropout, reduce_dim=reduce_dim,
                         hidden_dim=hidden_dim, downsample="none", depth=0, kernel_size=kernel_size,
                         mlp_1x1=mlp_1x1, hr2o_dropout=hr2o_dropout, roi_sampling_ratio=roi_sampling_ratio,
                         dtype=dtype, rngs=rngs)
        if depth < 1:
            raise ValueError(f"model.head.depth: the ACFB head needs >= 1 bank relation block, got {depth}")
        self.hidden_dim = int(hidden_dim)
        self.hr2o = nnx.List([BankRelation(hidden_dim, kernel_size, mlp_1x1, dropout=hr2o_dropout, dtype=dtype,
                                           rngs=rngs) for _ in range(depth)])

    def __call__(self, slow: jax.Array, fast: jax.Array, boxes: jax.Array, box_mask: jax.Array,
                 valid_hw: jax.Array, padded_hw: tuple[int, int], bank: jax.Array, bank_mask: jax.Array, *,
                 train: bool = False) -> jax.Array:
        """slow/fast [B, T, h, w, C], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2], bank
        [B, M, h-2, w-2, D], bank_mask [B, M] -> logits [B, N, K] (zero for padded boxes)."""
        check_head_inputs(slow, fast, boxes, box_mask, valid_hw, padded_hw)
        b, _, h, w, _ = slow.shape
        check_array(bank, "bank", "[B, M, h-2, w-2, D] on the clip's first-order grid",
                    (b, None, h - 2, w - 2, self.hidden_dim), np.floating)
        check_array(bank_mask, "bank_mask", "[B, M]", tuple(bank.shape[:2]), np.bool_)
        actors, x, eff = first_order_maps(self, slow, fast, boxes, valid_hw, padded_hw)
        mask = spatial_mask(eff, *x.shape[2:4])
        for block in self.hr2o:
            x = block(x, bank, mask, bank_mask, train=train)
        return relation_classifier(self, actors, x, mask, box_mask, train=train)

    @classmethod
    def from_config(cls, head_config: ml_collections.ConfigDict, width: int, num_classes: int, *,
                    dtype: jnp.dtype, rngs: nnx.Rngs) -> ACFBHead:
        h = head_config
        if h.downsample != "none":
            raise ValueError(f"model.head.downsample: the ACFB head has no downsampling; set 'none', got "
                             f"{h.downsample!r}")
        return cls(width, num_classes, reduce_dim=int(h.reduce_dim), hidden_dim=int(h.hidden_dim),
                   depth=int(h.depth), kernel_size=int(h.kernel_size), mlp_1x1=bool(h.mlp_1x1),
                   hr2o_dropout=float(h.hr2o_dropout), **common_head_kwargs(h), dtype=dtype, rngs=rngs)
