"""The whole detector (SlowFast + head) vs the oracle model: the torch SlowFast oracle (torch_slowfast.py) + the
torch head oracle (torch_heads.py, reference loop over clips), same weights copied into ACARDetector.

Clips are padded (bottom/right zeros) with different valid sizes per clip, as a batch reaches the model; both
sides run the backbone on the padded clips. Tolerance: 1e-4 on logits (max abs error divided by
max(1, max |logit|), since full-size random-weight models give logits of O(10..100)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from acar_jax.interop.torch_reference import heads as torch_heads  # noqa: E402
from acar_jax.interop.torch_reference import slowfast as torch_slowfast
from acar_jax.models.detector import ACARDetector  # noqa: E402
from configs.base import get_model_config  # noqa: E402
from configs.default import get_config  # noqa: E402


def abstract_detector(model_config) -> ACARDetector:
    """ACARDetector built by nnx.eval_shape (no random-init programs), RNG state made concrete."""
    model = nnx.eval_shape(lambda: ACARDetector(model_config, rngs=nnx.Rngs(params=0, dropout=1)))
    flat = nnx.to_flat_state(nnx.state(model, nnx.RngState))
    for _, var in flat:
        var.set_value(jax.random.key(1) if isinstance(var, nnx.RngKey) else jnp.zeros((), jnp.uint32))
    nnx.update(model, nnx.from_flat_state(flat))
    return model


def model_pair(model_config, seed: int = 0):
    backbone = torch_slowfast.randomize_(torch_slowfast.from_backbone_config(model_config.backbone), seed)
    head = torch_heads.randomize_(torch_heads.from_model_config(
        model_config, backbone.slow_inplanes + backbone.fast_inplanes), seed)
    flax_model = abstract_detector(model_config)
    torch_slowfast.load_torch_state_dict(flax_model.backbone, backbone.state_dict())
    torch_heads.load_head_state_dict(flax_model.head, head.state_dict())
    return backbone, head, flax_model


def make_inputs(num_frames: int, padded_hw: tuple[int, int], valid_hw: np.ndarray, box_counts, n_max: int,
                seed: int = 0):
    rng = np.random.RandomState(seed)
    b = len(box_counts)
    clips = np.zeros((b, num_frames, *padded_hw, 3), np.float32)
    for i, (vh, vw) in enumerate(valid_hw):
        clips[i, :, :vh, :vw] = rng.randn(num_frames, vh, vw, 3)
    xy1 = rng.uniform(0.0, 0.6, (b, n_max, 2))
    boxes = np.clip(np.concatenate([xy1, xy1 + rng.uniform(0.1, 0.4, (b, n_max, 2))], -1), 0, 1)
    mask = np.arange(n_max)[None] < np.asarray(box_counts)[:, None]
    boxes = np.where(mask[..., None], boxes, 0.0).astype(np.float32)
    return clips, boxes, mask, valid_hw.astype(np.int32)


def compare(model_config, clips, boxes, mask, valid_hw, name: str, seed: int = 0) -> float:
    backbone, head, flax_model = model_pair(model_config, seed)
    padded_hw = clips.shape[2:4]
    with torch.no_grad():
        slow, fast = backbone(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))
        want = torch_heads.run_oracle(head, slow, fast, boxes, mask, valid_hw, padded_hw).numpy()
    got = np.asarray(nnx.jit(lambda m, *a: m(*a))(flax_model, *map(jnp.asarray, (clips, boxes, mask, valid_hw))))
    err = np.abs(got - want).max()
    rel = err / max(1.0, np.abs(want).max())
    print(f"{name}: logits {got.shape} max |logit| {np.abs(want).max():.3g} max abs err {err:.2e} "
          f"(relative {rel:.2e})")
    assert got.shape == want.shape
    assert rel < 1e-4
    return rel


def test_tiny_model_equals_oracle():
    """Tiny default config (8 frames), 3 padded clips of different valid sizes with 3, 1 and 0 boxes."""
    cfg = get_config().model
    clips, boxes, mask, valid_hw = make_inputs(8, (64, 96), np.array([[64, 96], [48, 80], [40, 64]]),
                                               (3, 1, 0), 3)
    compare(cfg, clips, boxes, mask, valid_hw, "tiny ACAR")
    cfg.head.type = "linear"
    compare(cfg, clips, boxes, mask, valid_hw, "tiny Linear")


def test_inputs_rejected_by_name():
    cfg = get_config().model
    model = abstract_detector(cfg)
    clips, boxes, mask, valid_hw = make_inputs(8, (64, 64), np.array([[64, 64]]), (1,), 2)
    bad = {"clips": clips[0], "boxes": boxes[..., :2], "box_mask": mask.astype(np.int32),
           "valid_hw": valid_hw.astype(np.float32)}
    for name, value in bad.items():
        args = {**dict(clips=clips, boxes=boxes, box_mask=mask, valid_hw=valid_hw), name: value}
        with pytest.raises(ValueError, match=name):
            model(*(jnp.asarray(args[k]) for k in ("clips", "boxes", "box_mask", "valid_hw")))


def _full_inputs():
    return make_inputs(32, (64, 96), np.array([[64, 96], [48, 80]]), (2, 1), 2)


@pytest.mark.slow
def test_r50_acar_reference_config_equals_oracle_and_param_count():
    """R50 ACAR reference config (conv+BN+ReLU fusion k7, full span, depth 2, reduce 1024, hidden 512)."""
    cfg = get_model_config()
    compare(cfg, *_full_inputs(), "R50 ACAR")
    backbone, head, flax_model = model_pair(cfg)
    n_torch = torch_slowfast.torch_param_count(backbone) + torch_slowfast.torch_param_count(head)
    n_flax = flax_model.param_count()
    print(f"R50 ACAR parameters: flax {n_flax:,} torch oracle {n_torch:,}")
    assert n_flax == n_torch


@pytest.mark.slow
def test_r101_config_variant_equals_oracle():
    """R101-config variant: layers (3, 4, 23, 3), conv-only fusion kernel 5, ::alpha, depth 1, mlp_1x1."""
    cfg = get_model_config()
    cfg.backbone.update(layers=(3, 4, 23, 3), fuse_only_conv=True, fuse_kernel_size=5, slow_full_span=False)
    cfg.head.update(depth=1, mlp_1x1=True)
    compare(cfg, *_full_inputs(), "R101-config ACAR")
