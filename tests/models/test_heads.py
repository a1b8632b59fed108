"""ACAR and Linear heads vs the PyTorch oracle of the reference (tests/parity/torch_heads.py), same weights.

Oracle: the reference's heads, RoIAlign on the full padded map, the context cropped per clip to its unpadded
size, a Python loop over clips with only that clip's real actors. Batches: 3 clips of different valid sizes
holding N_max, 1 and 0 boxes. Tolerance: 1e-4 max abs on logits and on the loss gradients w.r.t. every head
parameter.
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from flax import nnx  # noqa: E402

from acar_jax.interop.torch_reference import heads as oracle  # noqa: E402
from acar_jax.models.acar_head import ACARHead  # noqa: E402
from acar_jax.models.head_layers import Conv2d  # noqa: E402
from acar_jax.models.linear_head import LinearHead  # noqa: E402
from acar_jax.training import losses  # noqa: E402

CS, CF, K, POSE = 16, 8, 9, 3     # slow / fast channels, classes, pose classes
FEAT_HW = (8, 12)                 # feature map of a 128 x 192 padded clip (stride 16)
PADDED_HW = (128, 192)
VALID_HW = np.array([[128, 192], [96, 160], [72, 112]], np.int32)  # effective 8x12, 6x10, 5x7
N_MAX = 4
BOX_COUNTS = (N_MAX, 1, 0)


def make_batch(seed: int = 0):
    rng = np.random.RandomState(seed)
    b = len(BOX_COUNTS)
    slow = rng.randn(b, 2, *FEAT_HW, CS).astype(np.float32)
    fast = rng.randn(b, 8, *FEAT_HW, CF).astype(np.float32)
    xy1 = rng.uniform(0.0, 0.6, (b, N_MAX, 2))
    wh = rng.uniform(0.05, 0.4, (b, N_MAX, 2))
    boxes = np.clip(np.concatenate([xy1, xy1 + wh], -1), 0.0, 1.0).astype(np.float32)
    boxes[0, 0] = [0.0, 0.0, 1.0, 1.0]  # a whole-frame box: reaches the border of the unpadded region
    mask = np.zeros((b, N_MAX), bool)
    for i, n in enumerate(BOX_COUNTS):
        mask[i, :n] = True
    boxes[~mask] = 0.0
    labels = (rng.rand(b, N_MAX, K) < 0.3).astype(np.float32)
    return slow, fast, boxes, mask, labels


def head_pair(kind: str, seed: int = 0, **kw):
    """The oracle with random weights and the Flax head holding the same weights."""
    width = CS + CF
    if kind == "linear":
        torch_head = oracle.TorchLinearHead(width, 7, K)
        flax_head = LinearHead(width, K, rngs=nnx.Rngs(0))
    else:
        torch_head = oracle.TorchACARHead(width, 7, K, reduce_dim=32, hidden_dim=16, **kw)
        flax_head = ACARHead(width, K, reduce_dim=32, hidden_dim=16, rngs=nnx.Rngs(0), **kw)
    oracle.randomize_(torch_head, seed)
    oracle.load_head_state_dict(flax_head, torch_head.state_dict())
    return torch_head, flax_head


def to_torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous()  # NTHWC -> NCTHW


@nnx.jit
def flax_forward(head, slow, fast, boxes, mask, valid_hw):
    return head(slow, fast, boxes, mask, valid_hw, PADDED_HW)


def flax_loss_grads(head, slow, fast, boxes, mask, valid_hw, labels):
    def loss_fn(h):
        logits = h(slow, fast, boxes, mask, valid_hw, PADDED_HW)
        per_roi = losses.roi_losses(logits, labels, mask, pose_softmax=True, num_pose_classes=POSE)
        return jnp.sum(per_roi) / jnp.maximum(jnp.sum(mask), 1.0)
    return nnx.jit(nnx.grad(loss_fn))(head)


def torch_pose_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The reference's ava_pose_softmax_func with `POSE` pose classes."""
    out = torch.cat([torch.softmax(logits[:, :POSE], 1), torch.sigmoid(logits[:, POSE:])], 1)
    return torch.clamp(out, 0.0, 1.0)


ACAR_VARIANTS = [
    dict(depth=2, mlp_1x1=False, downsample="max2x2"),
    dict(depth=1, mlp_1x1=True, downsample="max2x2"),
    dict(depth=2, mlp_1x1=True, downsample="none"),
    dict(depth=1, mlp_1x1=False, downsample="none"),
]


@pytest.mark.parametrize("kind,kw", [("linear", {})] + [("acar", v) for v in ACAR_VARIANTS],
                         ids=["linear"] + [f"acar-d{v['depth']}-mlp{int(v['mlp_1x1'])}-{v['downsample']}"
                                           for v in ACAR_VARIANTS])
def test_head_logits_and_grads_equal_oracle(kind, kw):
    """Logits (3 clips: N_max, 1, 0 boxes; different valid sizes) and loss gradients equal the oracle, 1e-4."""
    torch_head, flax_head = head_pair(kind, **kw)
    slow, fast, boxes, mask, labels = make_batch()
    want = oracle.run_oracle(torch_head, to_torch(slow), to_torch(fast), boxes, mask, VALID_HW, PADDED_HW)
    real = torch.from_numpy(mask.reshape(-1))
    loss = F.binary_cross_entropy(torch_pose_softmax(want.view(-1, K)[real]),
                                  torch.from_numpy(labels.reshape(-1, K))[real])
    torch_head.zero_grad()
    loss.backward()

    args = tuple(jnp.asarray(a) for a in (slow, fast, boxes, mask, VALID_HW))
    got = np.asarray(flax_forward(flax_head, *args))
    err = np.abs(got - want.detach().numpy()).max()
    grads = dict(nnx.to_flat_state(flax_loss_grads(flax_head, *args, jnp.asarray(labels))))
    grad_err = max(np.abs(oracle.flax_grads_to_torch_layout(
        {p: v.get_value() for p, v in grads.items()}, name) - p.grad.numpy()).max()
        for name, p in torch_head.named_parameters())
    print(f"{kind} {kw}: max |logit| {np.abs(got).max():.3g} max abs err {err:.2e}; grad max abs err "
          f"{grad_err:.2e}")
    assert got.shape == (3, N_MAX, K)
    assert err < 1e-4 and grad_err < 1e-4
    assert np.all(got[~mask] == 0.0)


@pytest.mark.parametrize("kind", ["linear", "acar"])
def test_padding_never_changes_real_actors(kind):
    """Garbage in padded box slots and in the padded part of the map (beyond what RoIAlign of a real box or
    the crop reads, i.e. rows/cols > effective size) leaves every real actor's logits unchanged."""
    _, flax_head = head_pair(kind)
    slow, fast, boxes, mask, _ = make_batch()
    base = np.asarray(flax_forward(flax_head, *map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW))))
    rng = np.random.RandomState(1)
    slow2, fast2, boxes2 = slow.copy(), fast.copy(), boxes.copy()
    boxes2[~mask] = rng.uniform(0, 1, boxes2[~mask].shape)
    eff = -(-np.array(FEAT_HW) * VALID_HW // np.array(PADDED_HW))
    for b, (eh, ew) in enumerate(eff):
        for x in (slow2, fast2):
            x[b, :, eh + 1:] = 50 * rng.randn(*x[b, :, eh + 1:].shape)
            x[b, :, :, ew + 1:] = 50 * rng.randn(*x[b, :, :, ew + 1:].shape)
    changed = np.asarray(flax_forward(flax_head, *map(jnp.asarray, (slow2, fast2, boxes2, mask, VALID_HW))))
    np.testing.assert_array_equal(changed[mask], base[mask])


def test_dropout_only_in_training():
    """train=False is deterministic; train=True draws from the 'dropout' stream."""
    width = CS + CF
    head = ACARHead(width, K, reduce_dim=32, hidden_dim=16, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    slow, fast, boxes, mask, _ = make_batch()
    args = tuple(map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW)))
    run = nnx.jit(lambda h, *a, train: h(*a, PADDED_HW, train=train), static_argnames="train")
    a = run(head, *args, train=False)
    b = run(head, *args, train=False)
    c = run(head, *args, train=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a)[mask], np.asarray(c)[mask])


def test_head_inputs_rejected_by_name():
    _, head = head_pair("acar", depth=1, mlp_1x1=False, downsample="max2x2")
    slow, fast, boxes, mask, _ = make_batch()
    good = dict(slow=slow, fast=fast, boxes=boxes, box_mask=mask, valid_hw=VALID_HW)
    bad = [("slow", slow[0]), ("fast", fast[:2]), ("boxes", boxes[..., :3]), ("boxes", boxes.astype(np.int32)),
           ("box_mask", mask.astype(np.float32)), ("box_mask", mask[:, :2]), ("valid_hw", VALID_HW[:, :1]),
           ("valid_hw", VALID_HW.astype(np.float32))]
    for name, value in bad:
        kwargs = dict(good, **{name: value})
        with pytest.raises(ValueError, match=name):
            head(*(jnp.asarray(kwargs[k]) for k in ("slow", "fast", "boxes", "box_mask", "valid_hw")), PADDED_HW)
    with pytest.raises(ValueError, match="model.head.downsample"):
        ACARHead(24, K, downsample="avg", rngs=nnx.Rngs(0))
    small = (slow[:, :, :2, :2], fast[:, :, :2, :2])          # a 2x2 map: the valid 3x3 conv has no output
    with pytest.raises(ValueError, match=r"feature map is 2x2, it needs at least 3x3"):
        head(*(jnp.asarray(a) for a in (*small, boxes, mask, np.full_like(VALID_HW, 32))), (32, 32))


def test_bfloat16_close_to_float32():
    """dtype=bfloat16 (convs and matmuls in bf16, params and norm statistics in f32) stays near float32."""
    torch_head, head32 = head_pair("acar", depth=2, mlp_1x1=False, downsample="max2x2")
    head16 = ACARHead(CS + CF, K, reduce_dim=32, hidden_dim=16, dtype="bfloat16", rngs=nnx.Rngs(0))
    oracle.load_head_state_dict(head16, torch_head.state_dict())
    args = tuple(map(jnp.asarray, make_batch()[:4])) + (jnp.asarray(VALID_HW),)
    a, b = np.asarray(flax_forward(head32, *args)), np.asarray(flax_forward(head16, *args))
    rel = np.abs(a - b).max() / np.abs(a).max()
    print(f"bf16 vs f32: max rel err {rel:.2e}")
    assert b.dtype == np.float32 and rel < 5e-2


@pytest.mark.parametrize("size", [2, 3, 5])
def test_valid_conv2d_equals_xla_valid_convolution_with_gradients(size):
    """Conv2d(padding=0) runs on CPU as a padded convolution with its border outputs cropped; the kept outputs
    read no padding, so outputs and gradients are those of XLA's valid convolution."""
    kernel = Conv2d(6, 5, size, rngs=nnx.Rngs(0)).kernel[...]
    x = jnp.asarray(np.random.default_rng(size).standard_normal((2, 3, 9, 11, 6)), jnp.float32)
    cot = jnp.asarray(np.random.default_rng(7).standard_normal((2, 3, 10 - size, 12 - size, 5)), jnp.float32)

    def ours(k, v):
        return Conv2d.__call__(types.SimpleNamespace(kernel=k, padding=0, dtype=jnp.float32), v)

    def valid(k, v):
        y = jax.lax.conv_general_dilated(v.reshape((-1, 9, 11, 6)), k, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y.reshape((2, 3, *y.shape[1:]))

    assert jax.default_backend() == "cpu"   # the padded-and-cropped form is the CPU one
    np.testing.assert_allclose(np.asarray(ours(kernel, x)), np.asarray(valid(kernel, x)), atol=1e-6)
    grads = [jax.jit(jax.grad(lambda k, v, f=f: jnp.sum(f(k, v) * cot), argnums=(0, 1)))(kernel, x)
             for f in (ours, valid)]
    for got, want in zip(*grads, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)  # summation order
