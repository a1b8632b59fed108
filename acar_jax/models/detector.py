"""The detector: SlowFast backbone + Linear / ACAR head on a batch of padded clips and padded boxes.

State paths are `backbone/...` and `head/...`, the reference's `module.backbone.module.*` / `module.head.module.*`
without the wrappers, so PyTorch checkpoints import by name (acar_jax.interop.torch_import).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from acar_jax.core.batch import check_model_inputs
from acar_jax.models.heads import build_head
from acar_jax.models.layers import torch_style_param_count
from acar_jax.models.slowfast import SlowFast


class ACARDetector(nnx.Module):
    """`model_config` is `config.model` (backbone, head, num_classes, dtype, remat, conv3d,
    conv_kernel_grad)."""

    def __init__(self, model_config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        self.backbone = SlowFast(model_config.backbone, dtype=jnp.dtype(model_config.dtype),
                                 remat=bool(model_config.remat), conv3d=str(model_config.conv3d),
                                 kernel_grad=str(model_config.conv_kernel_grad), rngs=rngs)
        width = self.backbone.slow_channels + self.backbone.fast_channels
        self.head = build_head(model_config, width, rngs=rngs)

    def __call__(self, clips: jax.Array, boxes: jax.Array, box_mask: jax.Array, valid_hw: jax.Array, *,
                 train: bool = False, bank: jax.Array | None = None, bank_mask: jax.Array | None = None
                 ) -> jax.Array:
        """clips [B, T, H, W, 3], boxes [B, N, 4], box_mask [B, N] bool, valid_hw [B, 2] int -> logits
        [B, N, K] float32 (zero for padded boxes). `train` turns dropout on (rng stream 'dropout').
        An ACFB head also takes each clip's bank window: bank [B, M, h-2, w-2, D], bank_mask [B, M]."""
        check_model_inputs(clips, boxes, box_mask, valid_hw)
        uses_bank = reads_bank(self)
        if uses_bank and (bank is None or bank_mask is None):
            raise ValueError(f"model.head.type: a {type(self.head).__name__} needs each clip's bank window (bank, "
                             "bank_mask); extract the bank of a trained ACAR run first: run.py --mode=extract_bank")
        if not uses_bank and bank is not None:
            raise ValueError(f"bank: given to a {type(self.head).__name__}; only feature-bank heads "
                             "(model.head.type 'acfb', 'lfb') read a bank")
        slow, fast = self.backbone(clips)
        padded_hw = tuple(clips.shape[2:4])
        if uses_bank:
            return self.head(slow, fast, boxes, box_mask, valid_hw, padded_hw, bank, bank_mask, train=train)
        return self.head(slow, fast, boxes, box_mask, valid_hw, padded_hw, train=train)

    def param_count(self) -> int:
        """Trainable scalars, counted as torch's `sum(p.numel() for p in model.parameters())`."""
        return torch_style_param_count(self)


def reads_bank(model: nnx.Module) -> bool:
    """Whether the detector's head takes a bank window (ACFB, the LFB-style variant)."""
    return bool(getattr(model.head, "reads_bank", False))


def create_model(config: ml_collections.ConfigDict, *, seed: int | None = None) -> ACARDetector:
    """The project's one model factory: the detector of `config.model` with fresh parameters (params stream
    seeded by `seed`, default config.seed; the dropout stream by seed + 1)."""
    seed = int(config.seed) if seed is None else int(seed)
    return ACARDetector(config.model, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def jit_logits(graphdef: nnx.GraphDef) -> Callable:
    """jit((params, batch_stats, rng_state, clips, boxes, box_mask, valid_hw[, bank, bank_mask]) -> float32
    logits [B, N, K]) in inference mode: the one compiled forward used by evaluation, the API and the loop."""
    @jax.jit
    def forward(params, batch_stats, rng_state, clips, boxes, box_mask, valid_hw, bank=None, bank_mask=None):
        model = nnx.merge(graphdef, params, batch_stats, rng_state, copy=True)
        extra = {} if bank is None else {"bank": bank, "bank_mask": bank_mask}
        return model(clips, boxes, box_mask, valid_hw, train=False, **extra).astype(jnp.float32)
    return forward
