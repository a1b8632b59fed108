"""LFB-style head (actor-feature bank, FBO non-local) vs its PyTorch oracle (tests/helpers/torch_lfb.py).

Batch: 3 clips of different valid sizes with 4, 1 and 0 actors and bank windows of 5, 2 and 0 entries at random
slots of 6. The oracle runs each keyframe alone on its real entries; the Flax head also runs each keyframe alone,
unpadded, and must equal its padded batch. Every Flax call is jitted (eager RoIAlign is slow on CPU).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
from flax import nnx

from acar_jax.interop.torch_reference import heads as oracle
from acar_jax.interop.torch_reference import lfb as torch_lfb
from acar_jax.models.acar_head import ACARHead, actor_features
from acar_jax.models.heads import build_head
from acar_jax.models.lfb_head import LFBHead
from tests.helpers import bank_head_parity
from tests.models.test_heads import CF, CS, PADDED_HW, POSE, VALID_HW, K, make_batch, to_torch

R, D = 32, 16                 # reduce_dim (bank entry width), hidden_dim
M_MAX = 6
BANK_COUNTS = (5, 2, 0)


def lfb_pair(seed: int = 0, **kw):
    torch_head = torch_lfb.TorchLFBHead(CS + CF, 7, K, reduce_dim=R, hidden_dim=D, **kw)
    oracle.randomize_(torch_head, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():                     # a non-trivial LayerNorm affine, so parity covers it
        for block in torch_head.fbo:
            block.norm.weight.copy_(0.5 + torch.rand(D, generator=g))
            block.norm.bias.copy_(0.2 * torch.randn(D, generator=g))
    flax_head = LFBHead(CS + CF, K, reduce_dim=R, hidden_dim=D, rngs=nnx.Rngs(0), **kw)
    oracle.load_head_state_dict(flax_head, torch_head.state_dict())
    return torch_head, flax_head


def make_bank(seed: int = 3, garbage: float = 0.0):
    """(padded bank [B, M, 1, 1, R], mask [B, M], per-clip real entries [m, R] as torch); `garbage` fills the
    masked slots (nan for 'nan')."""
    rng = np.random.RandomState(seed)
    bank = np.zeros((len(BANK_COUNTS), M_MAX, 1, 1, R), np.float32)
    if garbage:
        bank[:] = np.nan if np.isnan(garbage) else garbage * np.random.RandomState(99).randn(*bank.shape)
    mask = np.zeros((len(BANK_COUNTS), M_MAX), bool)
    banks = []
    for b, m in enumerate(BANK_COUNTS):
        real = rng.randn(m, R).astype(np.float32)
        slots = np.sort(rng.permutation(M_MAX)[:m])
        bank[b, slots, 0, 0] = real
        mask[b, slots] = True
        banks.append(torch.from_numpy(real))
    return bank, mask, banks


@nnx.jit
def lfb_forward(head, slow, fast, boxes, mask, valid_hw, bank, bank_mask):
    return head(slow, fast, boxes, mask, valid_hw, PADDED_HW, bank, bank_mask)


def test_lfb_logits_and_grads_equal_per_keyframe_oracle_and_each_keyframe_alone():
    """Padded, masked windows of 5, 2 and 0 entries equal the oracle run per keyframe on its real entries:
    logits to 1e-5, parameter gradients to 1e-4. The Flax head run on one keyframe alone (a smaller valid size,
    exactly its 2 real entries: no padded slot, no other clip) gives the logits of the padded batch, to 1e-5."""
    torch_head, flax_head = lfb_pair()
    slow, fast, boxes, mask, labels = make_batch()
    bank, bank_mask, banks = make_bank()
    want = torch_lfb.run_lfb_oracle(torch_head, to_torch(slow), to_torch(fast), boxes, mask, VALID_HW, PADDED_HW,
                                    banks)
    args = tuple(jnp.asarray(a) for a in (slow, fast, boxes, mask, VALID_HW, bank, bank_mask))
    got, err, grad_err = bank_head_parity.logit_and_grad_errors(torch_head, flax_head, lfb_forward, want, args, labels,
                                                                PADDED_HW, POSE)
    print(f"LFB: max |logit| {np.abs(got).max():.3g}, max abs err {err:.2e}, grad err {grad_err:.2e}")
    assert got.shape == (3, 4, K) and np.all(got[~mask] == 0.0)
    assert err < 1e-5 and grad_err < 1e-4
    b, m = 1, BANK_COUNTS[1]                  # the clip with a smaller valid size than the padded batch's
    one = tuple(jnp.asarray(a[b:b + 1]) for a in (slow, fast, boxes, mask, VALID_HW))
    alone = lfb_forward(flax_head, *one, jnp.asarray(banks[b].numpy()[None, :, None, None, :]), jnp.ones((1, m), bool))
    np.testing.assert_allclose(np.asarray(alone)[0][mask[b]], got[b][mask[b]], atol=1e-5, rtol=0)


def test_masked_bank_entries_change_nothing_and_an_empty_window_passes_through():
    """NaN, then large values, in masked slots: real actors' logits bitwise equal. An all-masked window gives
    the oracle's logits for empty windows (the blocks pass their input through)."""
    _, flax_head = lfb_pair()
    slow, fast, boxes, mask, _ = make_batch()
    clean = make_bank()
    base = np.asarray(lfb_forward(flax_head, *map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW, *clean[:2]))))
    for garbage in (float("nan"), 1e4):
        bank, bank_mask, _ = make_bank(garbage=garbage)
        np.testing.assert_array_equal(bank_mask, clean[1])
        got = np.asarray(lfb_forward(flax_head, *map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW, bank,
                                                                    bank_mask))))
        np.testing.assert_array_equal(got[mask], base[mask])
    empty = np.asarray(lfb_forward(flax_head, *map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW, clean[0],
                                                                  np.zeros_like(clean[1])))))
    torch_head, _ = lfb_pair()
    skipped = torch_lfb.run_lfb_oracle(torch_head, to_torch(slow), to_torch(fast), boxes, mask, VALID_HW, PADDED_HW,
                                       [torch.zeros(0, R)] * len(BANK_COUNTS))
    np.testing.assert_allclose(empty[mask], skipped.detach().numpy()[mask], atol=1e-5, rtol=0)


def test_bank_entries_are_the_acar_heads_actor_features():
    """What extraction stores for the LFB-style bank is the ACAR head's actor feature (conv_reduce, RoIAlign,
    max), equal to the oracle's to 1e-5; an ACAR head's conv_reduce / fc1 / fc2 have the LFB head's paths and
    shapes, so an ACAR checkpoint initialises them."""
    torch_acar = oracle.TorchACARHead(CS + CF, 7, K, reduce_dim=R, hidden_dim=D)
    oracle.randomize_(torch_acar, 5)
    flax_acar = ACARHead(CS + CF, K, reduce_dim=R, hidden_dim=D, rngs=nnx.Rngs(0))
    oracle.load_head_state_dict(flax_acar, torch_acar.state_dict())
    probe = torch_lfb.TorchLFBHead(CS + CF, 7, K, reduce_dim=R, hidden_dim=D)
    probe.conv_reduce.load_state_dict(torch_acar.conv_reduce.state_dict())
    slow, fast, boxes, mask, _ = make_batch()
    rois, _, _, flat = oracle.pack_batch(boxes, mask, VALID_HW, PADDED_HW)
    want = probe.actor_features([to_torch(slow), to_torch(fast)], rois).detach().numpy()
    features = nnx.jit(lambda h, *a: actor_features(h, *a, PADDED_HW))
    got = np.asarray(features(flax_acar, *map(jnp.asarray, (slow, fast, boxes, VALID_HW))))
    assert np.abs(got.reshape(-1, R)[flat] - want).max() < 1e-5

    def shapes(module):
        return {path: v.get_value().shape for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}

    acar, lfb = shapes(flax_acar), shapes(LFBHead(CS + CF, K, reduce_dim=R, hidden_dim=D, rngs=nnx.Rngs(0)))
    shared = {p for p in lfb if p[0] in ("conv_reduce", "fc1", "fc2")}
    assert len(shared) == 3 and all(acar[p] == lfb[p] for p in shared)


def test_lfb_inputs_rejected_by_name_and_built_from_the_config():
    _, head = lfb_pair(depth=1)
    slow, fast, boxes, mask, _ = make_batch()
    bank, bank_mask, _ = make_bank()
    base = tuple(map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW)))
    maps = np.zeros((3, M_MAX, 6, 10, R), np.float32)                           # an ACFB bank of maps
    with pytest.raises(ValueError, match=r"bank: expected shape .*actor features \(bank.content 'actors'\)"):
        head(*base, PADDED_HW, jnp.asarray(maps), jnp.asarray(bank_mask))
    with pytest.raises(ValueError, match=r"bank: expected shape"):
        head(*base, PADDED_HW, jnp.asarray(bank[..., :8]), jnp.asarray(bank_mask))   # another model's width
    with pytest.raises(ValueError, match=r"bank_mask: expected a bool dtype"):
        head(*base, PADDED_HW, jnp.asarray(bank), jnp.asarray(bank_mask, jnp.float32))
    with pytest.raises(ValueError, match=r"model.head.depth"):
        LFBHead(CS + CF, K, depth=0, rngs=nnx.Rngs(0))
    model = ml_collections.ConfigDict({"num_classes": K, "dtype": "float32", "head": {
        "type": "lfb", "roi_spatial": 7, "dropout": 0.0, "roi_sampling_ratio": -1, "reduce_dim": R,
        "hidden_dim": D, "depth": 2, "hr2o_dropout": 0.2, "downsample": "max2x2", "kernel_size": 3,
        "mlp_1x1": False}})
    built = build_head(model, CS + CF, rngs=nnx.Rngs(0))
    assert isinstance(built, LFBHead) and built.reads_bank and len(built.fbo) == 2
