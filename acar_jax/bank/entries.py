"""What a feature bank stores for each (keyframe, actor) of a trained ACAR detector, and the grid it sits on:
first-order actor-context maps (ACFB, bank.content "maps") or actor features (the LFB-style head, "actors")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from acar_jax.models.acar_head import actor_features, first_order_maps


def _check_acar(model: nnx.Module) -> None:
    if getattr(model.head, "type_name", None) != "acar":
        raise ValueError(f"bank extraction needs a detector with an ACAR head (model.head.type='acar'), got "
                         f"{type(model.head).__name__}")


def detector_bank_maps(model: nnx.Module, clips: jax.Array, boxes: jax.Array, valid_hw: jax.Array
                       ) -> tuple[jax.Array, jax.Array]:
    """A trained ACAR detector's bank entries for a batch: (maps [B, N, h-2, w-2, D] float32, crop [B, 2])."""
    _check_acar(model)
    slow, fast = model.backbone(clips)
    _, maps, eff = first_order_maps(model.head, slow, fast, boxes, valid_hw, tuple(clips.shape[2:4]))
    return maps.astype(jnp.float32), eff


def detector_bank_actors(model: nnx.Module, clips: jax.Array, boxes: jax.Array, valid_hw: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
    """A trained ACAR detector's LFB-style bank entries for a batch: (actor features [B, N, 1, 1, R] float32,
    crop [B, 2] of ones: the 1x1 grid every entry sits on)."""
    _check_acar(model)
    slow, fast = model.backbone(clips)
    feats = actor_features(model.head, slow, fast, boxes, valid_hw, tuple(clips.shape[2:4]))
    return feats[:, :, None, None, :].astype(jnp.float32), jnp.ones((clips.shape[0], 2), jnp.int32)


FEATURE_STRIDE = 16          # SlowFast with res5 dilated: feature map ceil(H / 16) x ceil(W / 16)
BANK_CONTENTS = ("maps", "actors")


def bank_grid_hw(content: str, padded_hw: tuple[int, int]) -> tuple[int, int]:
    """The grid a batch of padded clips (H, W) needs its bank maps on: "maps" (ACFB) the first-order grid
    (ceil(H/16) - 2, ceil(W/16) - 2); "actors" (LFB-style, one feature vector per actor) 1 x 1."""
    if content == "actors":
        return 1, 1
    if content != "maps":
        raise ValueError(f"bank.content: expected one of {BANK_CONTENTS}, got {content!r}")
    h, w = (-(-int(v) // FEATURE_STRIDE) for v in padded_hw)
    return h - 2, w - 2


def bank_entries_fn(content: str):
    """(model, clips, boxes, valid_hw) -> (entries [B, N, h, w, D] float32, crop [B, 2]) of a trained ACAR
    detector for bank.content: first-order maps ("maps") or actor features stored as 1 x 1 maps ("actors")."""
    if content == "maps":
        return detector_bank_maps
    if content == "actors":
        return detector_bank_actors
    raise ValueError(f"bank.content: expected one of {BANK_CONTENTS}, got {content!r}")
