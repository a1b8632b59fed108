"""SlowFast backbone vs the PyTorch oracle of the reference (tests/parity/torch_slowfast.py), same weights.

Oracle: `TorchSlowFast` in eval mode (the reference freezes BN), random conv weights and random BN affine and
running statistics. Tolerance: 1e-4 max abs on the tiny config (outputs are O(1..10)); the full-size configs
use 1e-4 relative to the output's max magnitude, since their activations reach O(100) (R101 slow: ~106, max
abs error ~1e-4, relative ~1e-6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from acar_jax.interop.torch_reference import slowfast as oracle  # noqa: E402
from acar_jax.models.layers import torch_style_param_count  # noqa: E402
from acar_jax.models.slowfast import SlowFast, slow_frame_indices  # noqa: E402
from configs.base import get_model_config  # noqa: E402
from configs.default import get_config  # noqa: E402


def tiny_backbone(**overrides):
    cfg = get_config().model.backbone
    cfg.update(overrides)
    return cfg


def full_config(**overrides):
    cfg = get_model_config().backbone  # reference R50: layers (3,4,6,3), width 64, beta 1/8, alpha 4
    cfg.update(overrides)
    return cfg


def random_clips(shape, seed=0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def build_pair(cfg, seed=0, **kwargs):
    """The oracle with random weights and the Flax module holding the same weights.

    The Flax module is built abstractly (nnx.eval_shape) and filled from the oracle: no random-init programs
    to compile, which keeps this file fast on 2 CPU cores.
    """
    torch_model = oracle.randomize_(oracle.from_backbone_config(cfg), seed)
    flax_model = nnx.eval_shape(lambda: SlowFast(cfg, rngs=nnx.Rngs(seed), **kwargs))
    oracle.load_torch_state_dict(flax_model, torch_model.state_dict())
    return torch_model, flax_model


def run_torch(model, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        slow, fast = model(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))
    return slow.permute(0, 2, 3, 4, 1).numpy(), fast.permute(0, 2, 3, 4, 1).numpy()


def run_flax(model, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    slow, fast = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(clips))
    return np.asarray(slow, np.float32), np.asarray(fast, np.float32)


@pytest.mark.parametrize("num_frames", [8, 16, 32, 64])
@pytest.mark.parametrize("alpha", [2, 4, 8])
def test_slow_frame_indices_equal_torch_linspace(num_frames, alpha):
    """slow_full_span replays torch.linspace's float32 arithmetic and .long() truncation exactly."""
    ref = torch.linspace(0, num_frames - 1, num_frames // alpha).long().numpy()
    np.testing.assert_array_equal(slow_frame_indices(num_frames, alpha, True), ref)
    np.testing.assert_array_equal(slow_frame_indices(num_frames, alpha, False),
                                  np.arange(num_frames)[::alpha])


def test_slow_frame_indices_exhaustive():
    """Every T up to 256 and alpha up to 8: a float64 linspace would differ at e.g. T=111, alpha=2."""
    for alpha in range(1, 9):
        for t in range(alpha, 257):
            ref = torch.linspace(0, t - 1, t // alpha).long().numpy()
            np.testing.assert_array_equal(slow_frame_indices(t, alpha, True), ref,
                                          err_msg=f"T={t} alpha={alpha}")


@pytest.mark.parametrize("full_span, only_conv, kernel", [
    (True, False, 7),   # R50 reference fusion
    (False, True, 5),   # R101 reference fusion
    (True, True, 5),
    (False, False, 7),
])
def test_tiny_parity(full_span, only_conv, kernel):
    """Tiny config (layers 1,1,1,1, width 16, beta 1/4) equals the oracle to 1e-4 on both pathways."""
    cfg = tiny_backbone(slow_full_span=full_span, fuse_only_conv=only_conv, fuse_kernel_size=kernel)
    torch_model, flax_model = build_pair(cfg)
    clips = random_clips((2, 8, 64, 96, 3))
    (ts, tf), (js, jf) = run_torch(torch_model, clips), run_flax(flax_model, clips)
    assert js.shape == ts.shape == (2, 2, 4, 6, 16 * 32)
    assert jf.shape == tf.shape == (2, 8, 4, 6, 128)
    np.testing.assert_allclose(js, ts, rtol=0, atol=1e-4)
    np.testing.assert_allclose(jf, tf, rtol=0, atol=1e-4)


def test_odd_size_feature_rule_and_parity():
    """h, w = ceil(H/16), ceil(W/16) on a 72 x 100 clip (res5 stride 1, dilation 2); equal to the oracle."""
    torch_model, flax_model = build_pair(tiny_backbone(), seed=1)
    clips = random_clips((1, 8, 72, 100, 3), seed=1)
    (ts, tf), (js, jf) = run_torch(torch_model, clips), run_flax(flax_model, clips)
    assert js.shape[2:4] == jf.shape[2:4] == (5, 7)
    np.testing.assert_allclose(js, ts, rtol=0, atol=1e-4)
    np.testing.assert_allclose(jf, tf, rtol=0, atol=1e-4)


def test_param_count_tiny_equals_torch():
    """nnx.Param count equals torch's sum(p.numel()) (BN scale/bias in, running statistics out)."""
    cfg = tiny_backbone()
    n_torch = oracle.torch_param_count(oracle.from_backbone_config(cfg))
    n_flax = torch_style_param_count(nnx.eval_shape(lambda: SlowFast(cfg, rngs=nnx.Rngs(0))))
    print(f"tiny SlowFast backbone parameters: flax {n_flax}, torch {n_torch}")
    assert n_flax == n_torch


def test_bfloat16_close_to_float32():
    """dtype=bf16 keeps params and BN stats f32, computes in bf16, and stays within 5e-2 relative (L2)."""
    cfg = tiny_backbone()
    clips = random_clips((1, 8, 32, 48, 3))
    _, f32 = build_pair(cfg)
    _, bf16 = build_pair(cfg, dtype=jnp.bfloat16)
    params = nnx.state(bf16, nnx.Any(nnx.Param, nnx.BatchStat))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float32)}
    outputs = nnx.jit(lambda m, x: m(x))(bf16, jnp.asarray(clips))
    for ref, out in zip(run_flax(f32, clips), outputs, strict=True):
        assert out.dtype == jnp.bfloat16
        out = np.asarray(out, np.float32)
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 5e-2


def test_remat_same_output_and_gradient():
    """remat=True rematerialises stages without changing the output or the parameter gradient."""
    cfg = tiny_backbone()
    clips = jnp.asarray(random_clips((1, 8, 32, 48, 3)))

    def loss(model, x):
        slow, fast = model(x)
        return jnp.mean(slow**2) + jnp.mean(fast**2)

    results = []
    for remat in (False, True):
        _, model = build_pair(cfg, remat=remat)
        value, grads = nnx.jit(nnx.value_and_grad(loss))(model, clips)
        results.append((value, grads))
    (v0, g0), (v1, g1) = results
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    leaves0, leaves1 = jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)
    assert len(leaves0) == len(leaves1) > 0
    for a, b in zip(leaves0, leaves1, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_bad_inputs_raise_named_errors():
    """Wrong rank, channel count, dtype, frame count and inconsistent width/beta are rejected by name."""
    model = nnx.eval_shape(lambda: SlowFast(tiny_backbone(), rngs=nnx.Rngs(0)))  # checks run before compute
    with pytest.raises(ValueError, match=r"clips: expected (rank 5|shape) \[B, T, H, W, 3\]"):
        model(jnp.zeros((8, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"clips: expected (rank 5|shape) \[B, T, H, W, 3\]"):
        model(jnp.zeros((1, 8, 32, 32, 1)))
    with pytest.raises(ValueError, match="clips: expected a float dtype"):
        model(jnp.zeros((1, 8, 32, 32, 3), jnp.int32))
    with pytest.raises(ValueError, match="clips: T=10"):
        model(jnp.zeros((1, 10, 32, 32, 3)))
    with pytest.raises(ValueError, match="model.backbone.layers"):
        nnx.eval_shape(lambda: SlowFast(tiny_backbone(layers=(1, 1, 1)), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="model.backbone.width/beta"):
        nnx.eval_shape(lambda: SlowFast(tiny_backbone(width=16, beta=0.3), rngs=nnx.Rngs(0)))


def _full_parity(cfg, name):
    torch.manual_seed(0)
    torch_model, flax_model = build_pair(cfg)
    n_torch, n_flax = oracle.torch_param_count(torch_model), torch_style_param_count(flax_model)
    clips = random_clips((1, 32, 64, 64, 3))
    (ts, tf), (js, jf) = run_torch(torch_model, clips), run_flax(flax_model, clips)
    err_s = np.abs(js - ts).max() / np.abs(ts).max()
    err_f = np.abs(jf - tf).max() / np.abs(tf).max()
    print(f"{name}: params flax {n_flax} torch {n_torch}; slow {js.shape} max|x| {np.abs(ts).max():.3g} "
          f"max abs err {np.abs(js - ts).max():.2e} (rel {err_s:.2e}); fast {jf.shape} max|x| "
          f"{np.abs(tf).max():.3g} max abs err {np.abs(jf - tf).max():.2e} (rel {err_f:.2e})")
    assert n_flax == n_torch
    assert js.shape == (1, 8, 4, 4, 2048) and jf.shape == (1, 32, 4, 4, 256)
    assert err_s < 1e-4 and err_f < 1e-4


@pytest.mark.slow
def test_r50_reference_config_parity():
    """R50 reference config (conv+BN+ReLU fusion, kernel 7, full span) equals the oracle; params equal."""
    _full_parity(full_config(), "R50")


@pytest.mark.slow
def test_r101_reference_config_parity():
    """R101 reference config (conv-only fusion, kernel 5, ::alpha) equals the oracle; params equal."""
    _full_parity(full_config(layers=(3, 4, 23, 3), fuse_only_conv=True, fuse_kernel_size=5,
                             slow_full_span=False), "R101")
