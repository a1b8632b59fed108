"""The public Python interface: load a trained model and run it on batches of clips.

    from acar_jax import api
    model = api.load_model("configs/default.py", "runs/default/checkpoints")
    logits = model.logits(clips, boxes, box_mask, valid_hw)    # [B, N, K]
    scores = model.predict(clips, boxes, box_mask, valid_hw)   # the prediction function applied

Inputs follow acar_jax/core/batch.py (clips [B, T, H, W, 3] normalised and zero-padded, boxes [B, N, 4]
normalised to each clip's unpadded frame, box_mask [B, N] bool, valid_hw [B, 2] int); they are checked before
the jitted call.
"""

from acar_jax.inference.model import Model, load_model

__all__ = ["Model", "load_model"]
