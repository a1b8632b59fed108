"""The head registry: `model.head.type` -> the head class that builds itself from `config.model.head`.

Each head module holds one head and imports only the shared layers (head_layers.py) and the head it builds on
(ACFB on ACAR's encoder, LFB on ACAR's actor features); this module alone knows every head.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from acar_jax.models.acar_head import ACARHead
from acar_jax.models.acfb_head import ACFBHead
from acar_jax.models.lfb_head import LFBHead
from acar_jax.models.linear_head import LinearHead

HEADS = {head.type_name: head for head in (LinearHead, ACARHead, ACFBHead, LFBHead)}


def build_head(model_config: ml_collections.ConfigDict, width: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """The head named by `model_config.head.type` on a `width`-channel backbone."""
    head_type = str(model_config.head.type)
    if head_type not in HEADS:
        names = ", ".join(repr(name) for name in HEADS)
        raise ValueError(f"model.head.type: expected one of {names}, got {head_type!r}")
    return HEADS[head_type].from_config(model_config.head, width, int(model_config.num_classes),
                                        dtype=jnp.dtype(model_config.dtype), rngs=rngs)
