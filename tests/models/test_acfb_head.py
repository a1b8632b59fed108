"""ACFB head vs its PyTorch oracle (tests/helpers/torch_acfb.py), tied to the verified ACAR/HR2O oracle.

Batch: 3 clips of different valid sizes with 4, 1 and 0 actors and bank windows of 5, 2 and 0 entries, padded to
6 slots and to the batch's grid. The oracle runs each keyframe alone on its unpadded maps and its real entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from acar_jax.interop.torch_reference import acfb as torch_acfb
from acar_jax.interop.torch_reference import heads as oracle
from acar_jax.models.acar_head import HR2O, first_order_maps
from acar_jax.models.acfb_head import ACFBHead, BankRelation, flip_maps
from acar_jax.models.head_layers import spatial_mask
from tests.helpers import bank_head_parity
from tests.models.test_heads import CF, CS, PADDED_HW, POSE, VALID_HW, K, head_pair, make_batch, to_torch

D = 16                        # hidden_dim
M_MAX = 6                     # bank slots per clip
BANK_COUNTS = (5, 2, 0)
EFF = np.array([[8, 12], [6, 10], [5, 7]]) - 2    # first-order crop per clip (effective feature size - 2)
GRID = (8 - 2, 12 - 2)


def acfb_pair(seed: int = 0, **kw):
    torch_head = torch_acfb.TorchACFBHead(CS + CF, 7, K, reduce_dim=32, hidden_dim=D, **kw)
    flax_head = ACFBHead(CS + CF, K, reduce_dim=32, hidden_dim=D, rngs=nnx.Rngs(0), **kw)
    oracle.randomize_(torch_head, seed)
    oracle.load_head_state_dict(flax_head, torch_head.state_dict())
    return torch_head, flax_head


def make_bank(seed: int = 3, garbage: float = 0.0):
    """(padded bank [B, M, 6, 10, D], mask [B, M], per-clip unpadded torch banks [m, D, eh, ew]); `garbage`
    fills masked slots and the area outside each crop (nan for 'nan')."""
    rng = np.random.RandomState(seed)
    bank = np.zeros((len(BANK_COUNTS), M_MAX, *GRID, D), np.float32)
    if garbage:
        bank[:] = np.nan if np.isnan(garbage) else garbage * np.random.RandomState(99).randn(*bank.shape)
    mask = np.zeros((len(BANK_COUNTS), M_MAX), bool)
    banks = []
    for b, m in enumerate(BANK_COUNTS):
        eh, ew = EFF[b]
        real = np.abs(rng.randn(m, eh, ew, D)).astype(np.float32)   # first-order maps are post-ReLU
        slots = rng.permutation(M_MAX)[:m]                          # real entries anywhere among the slots
        bank[b, slots, :eh, :ew] = real
        mask[b, slots] = True
        banks.append(torch.from_numpy(real).permute(0, 3, 1, 2).contiguous())
    return bank, mask, banks


@nnx.jit
def acfb_forward(head, slow, fast, boxes, mask, valid_hw, bank, bank_mask):
    return head(slow, fast, boxes, mask, valid_hw, PADDED_HW, bank, bank_mask)


@pytest.mark.parametrize("kw", [dict(depth=2, mlp_1x1=False), dict(depth=1, mlp_1x1=True)],
                         ids=["depth2-3x3", "depth1-mlp1x1"])
def test_acfb_logits_and_grads_equal_per_keyframe_oracle(kw):
    """Padded, masked windows of different sizes (5, 2, 0 entries; 3 grid sizes) equal the oracle run per
    keyframe on its unpadded maps and real entries: logits to 1e-5, parameter gradients to 1e-4."""
    torch_head, flax_head = acfb_pair(**kw)
    slow, fast, boxes, mask, labels = make_batch()
    bank, bank_mask, banks = make_bank()
    want = torch_acfb.run_acfb_oracle(torch_head, to_torch(slow), to_torch(fast), boxes, mask, VALID_HW,
                                      PADDED_HW, banks)
    args = tuple(jnp.asarray(a) for a in (slow, fast, boxes, mask, VALID_HW, bank, bank_mask))
    got, err, grad_err = bank_head_parity.logit_and_grad_errors(torch_head, flax_head, acfb_forward, want, args, labels,
                                                                PADDED_HW, POSE)
    print(f"ACFB {kw}: max |logit| {np.abs(got).max():.3g}, max abs err {err:.2e}, grad err {grad_err:.2e}")
    assert got.shape == (3, 4, K) and np.all(got[~mask] == 0.0)
    assert err < 1e-5 and grad_err < 1e-4


def test_masked_and_out_of_grid_bank_entries_change_nothing():
    """NaN, then large random values, in masked slots and outside each crop: real actors' logits bitwise equal."""
    _, flax_head = acfb_pair()
    slow, fast, boxes, mask, _ = make_batch()
    clean = make_bank()
    base = np.asarray(acfb_forward(flax_head, *map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW, *clean[:2]))))
    for garbage in (float("nan"), 1e4):
        bank, bank_mask, _ = make_bank(garbage=garbage)
        np.testing.assert_array_equal(bank_mask, clean[1])
        got = np.asarray(acfb_forward(flax_head, *map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW, bank,
                                                                     bank_mask))))
        np.testing.assert_array_equal(got[mask], base[mask])


def test_block_with_own_maps_as_bank_equals_hr2o_oracle():
    """One block whose window holds only the current keyframe's own maps IS HR2O: the oracle's BankNL(x, x)
    equals the verified HR2O_NL oracle, and the Flax block equals both (same weights), per clip, 1e-5."""
    torch_head, flax_head = acfb_pair(depth=1)
    slow, fast, boxes, mask, _ = make_batch()
    t_block = torch_head.hr2o[0]
    ref = oracle.HR2O_NL(D, 3, False, 0.2)
    ref.load_state_dict(t_block.state_dict())
    ref.eval()
    rois, roi_ids, sizes, _ = oracle.pack_batch(boxes, mask, VALID_HW, PADDED_HW)
    _, t_maps = torch_head.first_order([to_torch(slow), to_torch(fast)], rois, roi_ids, sizes)

    _, x, eff = first_order_maps(flax_head, *map(jnp.asarray, (slow, fast, boxes, VALID_HW)), PADDED_HW)
    smask = spatial_mask(eff, *x.shape[2:4])
    got = flax_head.hr2o[0](x, x, smask, jnp.asarray(mask), train=False)
    hr2o = HR2O(D, 3, False, rngs=nnx.Rngs(0))
    nnx.update(hr2o, nnx.state(flax_head.hr2o[0]))
    via_hr2o = hr2o(x, smask, jnp.asarray(mask), train=False)
    np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(via_hr2o)[mask], atol=1e-5, rtol=0)
    for b, tx in enumerate(t_maps):
        if tx.shape[0] == 0:
            continue
        want = ref(tx)
        np.testing.assert_allclose(t_block(tx, tx).detach().numpy(), want.detach().numpy(), atol=1e-6, rtol=0)
        eh, ew = EFF[b]
        ours = np.asarray(got)[b, :tx.shape[0], :eh, :ew].transpose(0, 3, 1, 2)
        assert np.abs(ours - want.detach().numpy()).max() < 1e-5


def test_first_order_maps_of_acar_head_are_the_pre_downsampling_maps():
    """What extraction saves from a trained ACAR head (max2x2 downsampling) is its map BEFORE the pool: equal
    to the oracle's per-clip conv2 output, 1e-5, zero outside each crop."""
    torch_acar, flax_acar = head_pair("acar", depth=2, mlp_1x1=False, downsample="max2x2")
    slow, fast, boxes, mask, _ = make_batch()
    probe = torch_acfb.TorchACFBHead(CS + CF, 7, K, reduce_dim=32, hidden_dim=D)
    probe.load_state_dict({k: v for k, v in torch_acar.state_dict().items() if not k.startswith("hr2o")},
                          strict=False)
    rois, roi_ids, sizes, _ = oracle.pack_batch(boxes, mask, VALID_HW, PADDED_HW)
    _, t_maps = probe.first_order([to_torch(slow), to_torch(fast)], rois, roi_ids, sizes)
    _, maps, eff = first_order_maps(flax_acar, *map(jnp.asarray, (slow, fast, boxes, VALID_HW)), PADDED_HW)
    maps = np.asarray(maps)
    np.testing.assert_array_equal(np.asarray(eff), EFF)
    for b, tx in enumerate(t_maps):
        eh, ew = EFF[b]
        n = tx.shape[0]
        if n == 0:
            continue
        assert np.abs(maps[b, :n, :eh, :ew].transpose(0, 3, 1, 2) - tx.detach().numpy()).max() < 1e-5
        assert not maps[b, :, eh:].any() and not maps[b, :, :, ew:].any()


def test_flipping_bank_with_clip_keeps_locations_aligned():
    """A location-wise block (1x1 convs): flipping the current maps AND the bank within the crop flips the
    output (equivariance); flipping the clip but not its bank gives a different output. The flip is an
    involution and leaves columns outside the crop alone."""
    block = BankRelation(D, 1, True, dropout=0.0, rngs=nnx.Rngs(0))
    nnx.update(block, jax.tree.map(lambda p: p + 0.3, nnx.state(block, nnx.Param)))   # non-trivial norm affine
    rng = np.random.RandomState(0)
    x = np.abs(rng.randn(3, 4, *GRID, D)).astype(np.float32)
    bank, bank_mask, _ = make_bank()
    eff = jnp.asarray(EFF)
    smask = spatial_mask(eff, *GRID)
    x = np.asarray(x * np.asarray(smask)[:, None, :, :, None])
    run = nnx.jit(lambda blk, a, bk: blk(a, bk, smask, jnp.asarray(bank_mask), train=False))
    base = np.asarray(run(block, jnp.asarray(x), jnp.asarray(bank)))
    fx, fb = flip_maps(jnp.asarray(x), eff[:, 1]), flip_maps(jnp.asarray(bank), eff[:, 1])
    np.testing.assert_array_equal(np.asarray(flip_maps(fb, eff[:, 1])), bank)
    assert np.array_equal(np.asarray(fb)[1, :, :, EFF[1, 1]:], bank[1, :, :, EFF[1, 1]:])
    both = np.asarray(run(block, fx, fb))
    np.testing.assert_allclose(both, np.asarray(flip_maps(jnp.asarray(base), eff[:, 1])), atol=1e-5, rtol=0)
    clip_only = np.asarray(run(block, fx, jnp.asarray(bank)))
    assert np.abs(clip_only[:2] - both[:2]).max() > 1e-2


def test_acfb_inputs_rejected_by_name():
    _, head = acfb_pair(depth=1)
    slow, fast, boxes, mask, _ = make_batch()
    bank, bank_mask, _ = make_bank()
    base = tuple(map(jnp.asarray, (slow, fast, boxes, mask, VALID_HW)))
    with pytest.raises(ValueError, match=r"bank: expected shape .*first-order grid"):
        head(*base, PADDED_HW, jnp.asarray(bank[:, :, :-1]), jnp.asarray(bank_mask))   # another scale's grid
    with pytest.raises(ValueError, match=r"bank: expected shape"):
        head(*base, PADDED_HW, jnp.asarray(bank[..., :8]), jnp.asarray(bank_mask))      # another model's width
    with pytest.raises(ValueError, match=r"bank_mask: expected a bool dtype"):
        head(*base, PADDED_HW, jnp.asarray(bank), jnp.asarray(bank_mask, jnp.float32))
    with pytest.raises(ValueError, match=r"model.head.depth"):
        ACFBHead(CS + CF, K, depth=0, rngs=nnx.Rngs(0))


@pytest.mark.slow   # builds and compiles the whole (tiny) detector twice
def test_detector_with_acfb_head_reads_a_bank_and_asks_for_one():
    """config.model.head.type = 'acfb' builds the ACFB head; the detector passes the bank window to it, refuses
    to run without one (and refuses a bank for a head that reads none), and the bank is an input: the
    logits change with it, no parameter is made for it."""
    from acar_jax.models.detector import ACARDetector
    from configs.default import get_config

    config = get_config()
    config.model.head.type, config.model.head.downsample = "acfb", "none"
    model = ACARDetector(config.model, rngs=nnx.Rngs(params=0, dropout=1))
    assert isinstance(model.head, ACFBHead) and len(model.head.hr2o) == config.model.head.depth
    rng = np.random.RandomState(0)
    clips = jnp.asarray(rng.randn(1, 8, 64, 96, 3).astype(np.float32))     # feature 4x6 -> first-order 2x4
    boxes = jnp.asarray([[[0.1, 0.1, 0.6, 0.9], [0.5, 0.2, 0.9, 0.8]]], jnp.float32)
    box_mask, valid_hw = jnp.asarray([[True, True]]), jnp.asarray([[64, 96]], jnp.int32)
    d = config.model.head.hidden_dim
    bank = jnp.asarray(np.abs(rng.randn(1, 3, 2, 4, d)).astype(np.float16))
    run = nnx.jit(lambda m, bk, bm: m(clips, boxes, box_mask, valid_hw, bank=bk, bank_mask=bm))
    a = np.asarray(run(model, bank, jnp.asarray([[True, True, False]])))
    b = np.asarray(run(model, bank * 3, jnp.asarray([[True, True, False]])))
    assert a.shape == (1, 2, config.model.num_classes) and np.isfinite(a).all() and not np.allclose(a, b)
    with pytest.raises(ValueError,
                       match=r"model.head.type: a ACFBHead needs each clip's bank window .*--mode=extract_bank"):
        model(clips, boxes, box_mask, valid_hw)
    with pytest.raises(ValueError, match=r"model.head.downsample: the ACFB head has no downsampling"):
        config.model.head.downsample = "max2x2"
        ACARDetector(config.model, rngs=nnx.Rngs(0))
    config.model.head.type = "acar"
    acar = ACARDetector(config.model, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"bank: given to a ACARHead"):
        acar(clips, boxes, box_mask, valid_hw, bank=bank, bank_mask=jnp.ones((1, 3), bool))
