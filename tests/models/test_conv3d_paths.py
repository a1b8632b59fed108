"""config.model.conv3d: the native 3-D convolution and the time-folded form compute the same function and the
same gradients (1e-5) on the tiny SlowFast, and "auto" resolves by backend."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from acar_jax.models import layers
from acar_jax.models.layers import Conv3d, conv2d_tap_kernel_grad, resolve_conv3d
from acar_jax.models.slowfast import SlowFast
from configs.default import get_config


def test_auto_resolves_by_backend_and_unknown_paths_are_named():
    assert resolve_conv3d("auto", backend="cpu") == "folded"
    assert resolve_conv3d("auto", backend="gpu") == "native"
    assert resolve_conv3d("auto", backend="tpu") == "native"
    assert resolve_conv3d("native", backend="cpu") == "native"
    with pytest.raises(ValueError, match="model.conv3d must be one of"):
        resolve_conv3d("3d")


@pytest.mark.parametrize("kwargs", [dict(kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3)),
                                    dict(kernel_size=(7, 1, 1), stride=(4, 1, 1), padding=(3, 0, 0)),
                                    dict(kernel_size=(1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2)),
                                    dict(kernel_size=(3, 1, 1), padding=(1, 0, 0)),
                                    dict(kernel_size=(3, 1, 1), padding=(3, 0, 0), dilation=(2, 1, 1)),
                                    dict(kernel_size=(5, 1, 1)),
                                    dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                                    dict(kernel_size=1, stride=(1, 2, 2)),
                                    dict(kernel_size=(3, 1, 1), stride=(2, 2, 2), padding=(1, 1, 1)),
                                    dict(kernel_size=(1, 3, 3), padding=(0, 1, 1)),
                                    dict(kernel_size=(3, 3, 3), padding=(1, 1, 1)),
                                    dict(kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))])
def test_single_conv_paths_agree_with_gradients(kwargs):
    """Every kind of Conv3d the SlowFast has (fast stem, lateral fusion, dilated 1x3x3, temporal head conv, strided
    1x3x3, strided 1x1 downsample, 1x3x3, slow stem), a padded strided 1x1 spatial kernel, a stride-1 3x3x3
    kernel and temporal kernels with dilation / without padding (the output-shifting form); the folded path
    with XLA's kernel gradient (the default) and with kernel_grad="auto" (the stride-1 spatial ones and the slow
    stem then take the per-tap kernel gradient)."""
    size = kwargs["kernel_size"]
    channels = 3 if not isinstance(size, int) and size[1:] == (7, 7) else 5   # > 3: the folded path's non-stem forms
    x = jnp.asarray(np.random.RandomState(0).randn(2, 8, 12, 10, channels).astype(np.float32))
    results = []
    for path, kernel_grad in (("native", "xla"), ("folded", "xla"), ("folded", "auto")):
        conv = Conv3d(channels, 4, path=path, kernel_grad=kernel_grad, rngs=nnx.Rngs(0), **kwargs)
        graphdef, params = nnx.split(conv)

        def loss(p, x, graphdef=graphdef):
            y = nnx.merge(graphdef, p)(x)
            return jnp.sum(y * jnp.cos(y)), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        results.append((y, grads))
    (y_n, g_n), *folded = results
    for y_f, g_f in folded:
        np.testing.assert_allclose(y_n, y_f, atol=1e-5, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(g_n), jax.tree.leaves(g_f), strict=True):   # 1e-5 of the gradient's
            scale = max(float(jnp.max(jnp.abs(a))), 1.0)                            # scale: sums of ~500
            np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-5)          # products each


def _loss_and_grads(conv: Conv3d, x: jax.Array, *, remat: bool = False):
    """jit(grad) of sum(y * cos(y)) w.r.t. the kernel and the input, optionally rematerialised."""
    graphdef, params = nnx.split(conv)

    def loss(p, x):
        y = nnx.merge(graphdef, p)(x).astype(jnp.float32)
        return jnp.sum(y * jnp.cos(y))

    return jax.jit(jax.value_and_grad(jax.checkpoint(loss) if remat else loss, argnums=(0, 1)))(params, x)


@pytest.mark.parametrize(("kwargs", "channels", "out", "form"),
                         [(dict(kernel_size=(1, 3, 3), padding=(0, 1, 1)), 6, 4, {"auto": None, "taps": "tap"}),
                          (dict(kernel_size=(1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2)), 6, 4,
                           {"auto": None, "taps": "tap"}),
                          (dict(kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3)), 3, 4,
                           {"auto": "row on pairs", "taps": "tap"}),
                          (dict(kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3)), 3, 40,
                           {"auto": "row", "taps": "tap"}),
                          (dict(kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3)), 3, 8,
                           {"auto": "row", "taps": "tap"}),
                          (dict(kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3)), 3, 4,
                           {"auto": "row on pairs", "taps": "tap"}),
                          (dict(kernel_size=(1, 3, 3), padding=(0, 1, 1)), 3, 4,
                           {"auto": "row", "taps": "tap"}),
                          (dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), 6, 4,
                           {"auto": None, "taps": None})])
def test_kernel_grad_forms_are_taken_where_measured_faster(kwargs, channels, out, form, monkeypatch):
    """"auto" (the default): the stems' (<= 3 channels) kernel gradient one matmul per kernel row, on the input's
    column pairs below STEM_PAIRED_BELOW_OUTPUTS = 40 outputs (the tiny model's 5 x 4, not R50's 5 x 8) where the
    column stride is 2, XLA's elsewhere; "taps": one matmul per tap on every kernel run as one 2-D convolution (not
    the strided ones, which are matmuls already); "xla": never a custom rule."""
    calls = []
    original = layers._kernel_grad_by_matmul

    def record(x, *args):
        form = ("row" if args[-1] else "tap") + (" on pairs" if x.shape[-1] == 2 * channels else "")
        calls.append(form)
        return original(x, *args)
    monkeypatch.setattr(layers, "_kernel_grad_by_matmul", record)
    x = jnp.zeros((1, 5, 9, 9, channels), jnp.float32)
    for kernel_grad in ("auto", "taps", "xla"):
        conv = Conv3d(channels, out, path="folded", kernel_grad=kernel_grad, rngs=nnx.Rngs(0), **kwargs)
        graphdef, params = nnx.split(conv)
        calls.clear()
        jax.make_jaxpr(jax.grad(lambda p, g=graphdef: jnp.sum(nnx.merge(g, p)(x))))(params)
        taken = form.get(kernel_grad)
        assert calls == ([] if taken is None else [taken]), kernel_grad
    assert layers.STEM_PAIRED_BELOW_OUTPUTS == 40
    assert Conv3d(channels, out, rngs=nnx.Rngs(0), **kwargs).kernel_grad == "auto"
    with pytest.raises(ValueError, match="kernel_grad must be one of"):
        Conv3d(3, 4, 3, kernel_grad="im2col", rngs=nnx.Rngs(0))


@pytest.mark.parametrize(("width", "kernel", "padding", "channels", "out"),
                         [(224, (7, 7), ((3, 3), (3, 3)), 3, 20), (13, (7, 7), ((3, 3), (3, 3)), 3, 8),
                          (12, (7, 4), ((0, 2), (1, 2)), 2, 5), (9, (3, 3), ((1, 1), (0, 0)), 1, 16),
                          (10, (5, 1), ((2, 2), (0, 1)), 3, 4)])
def test_column_pair_convolution_equals_xla(width, kernel, padding, channels, out):
    """`_conv_on_column_pairs` (the small stems' form) against XLA's stride-2 convolution: even and odd padded
    widths, odd and even kernel widths, asymmetric pads; forward to float32 rounding, kernel and input
    gradients to 1e-5 of their scale, under jit."""
    rng = np.random.RandomState(3)
    x = jnp.asarray(rng.randn(2, 11, width, channels).astype(np.float32))
    k = jnp.asarray(rng.randn(*kernel, channels, out).astype(np.float32))
    args = ((2, 2), padding, (1, 1))
    y_ref = layers._conv2d(x, k, *args)
    dy = jnp.asarray(rng.randn(*y_ref.shape).astype(np.float32))
    grads = []
    for fn in (layers._conv2d, layers._conv_on_column_pairs):
        y, vjp = jax.jit(lambda x, k, fn=fn: jax.vjp(lambda x_, k_: fn(x_, k_, *args), x, k))(x, k)
        assert y.shape == y_ref.shape
        np.testing.assert_allclose(y, y_ref, atol=1e-4, rtol=1e-5)
        grads.append(vjp(dy))
    for a, b in zip(*grads, strict=True):
        scale = max(float(jnp.max(jnp.abs(a))), 1.0)
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-5)
    with pytest.raises(ValueError, match="column stride 2"):
        layers._conv_on_column_pairs(x, k, (2, 1), padding, (1, 1))


def test_column_pair_stem_in_bfloat16_matches_the_direct_form():
    """The tiny model's fast stem (5 x 4 outputs: column pairs) in bfloat16 against the same stem's direct form
    (`kernel_grad="xla"`): outputs within bf16 rounding, float32 kernel gradients (accumulated in float32)."""
    kwargs = dict(kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3))
    x = jnp.asarray(np.random.RandomState(4).randn(2, 6, 16, 22, 3).astype(np.float32))
    convs = [Conv3d(3, 4, path="folded", kernel_grad=form, dtype=jnp.bfloat16, rngs=nnx.Rngs(5), **kwargs)
             for form in ("xla", "auto")]
    (loss_x, grads_x), (loss_p, grads_p) = [_loss_and_grads(conv, x) for conv in convs]
    np.testing.assert_allclose(loss_x, loss_p, rtol=2e-2, atol=0.2)
    for a, b in zip(jax.tree.leaves(grads_x), jax.tree.leaves(grads_p), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        scale = max(float(jnp.max(jnp.abs(a))), 1.0)
        np.testing.assert_allclose(a, b, atol=2e-2 * scale, rtol=2e-2)


@pytest.mark.parametrize(("kwargs", "channels"), [(dict(kernel_size=(1, 3, 3), padding=(0, 1, 1)), 6),
                                                   (dict(kernel_size=(1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2)),
                                                    6),
                                                   (dict(kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=1), 3)])
def test_per_tap_kernel_gradient_equals_xla_under_jit_remat_and_bf16(kwargs, channels):
    """The per-tap kernel gradient ("taps"; also on a strided 3-channel kernel, a stem's form) and "auto" (the
    per-row form on that stem) against XLA's ("xla"): 1e-5 in float32 under jit + remat; in bfloat16 within bf16
    rounding; float32 parameter gradients."""
    x = jnp.asarray(np.random.RandomState(2).randn(2, 6, 11, 9, channels).astype(np.float32))
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):
        forms = ("xla", "taps", "auto")   # "auto": the by-row form where the input has 3 channels
        (loss_x, grads_x), *others = [_loss_and_grads(Conv3d(channels, 14, path="folded", kernel_grad=form,
                                                             dtype=dtype, rngs=nnx.Rngs(1), **kwargs), x, remat=True)
                                      for form in forms]
        for loss_t, grads_t in others:
            np.testing.assert_allclose(loss_x, loss_t, rtol=tol, atol=10 * tol)   # a sum of ~10^3 terms
            for a, b in zip(jax.tree.leaves(grads_x), jax.tree.leaves(grads_t), strict=True):
                assert a.dtype == b.dtype == jnp.float32
                scale = max(float(jnp.max(jnp.abs(a))), 1.0)
                np.testing.assert_allclose(a, b, atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("by_row", [False, True])
def test_matmul_kernel_gradient_accumulates_bf16_in_float32(by_row):
    """bf16 inputs: the kernel gradient (per tap or per kernel row) is the float32 sum of bf16 products rounded
    once to bf16 (as XLA:CPU's convolution accumulates), not a bf16 running sum."""
    rng = np.random.RandomState(3)
    x = jnp.asarray(rng.randn(4, 16, 16, 8), jnp.bfloat16)
    k = jnp.asarray(rng.randn(3, 3, 8, 8), jnp.bfloat16)
    dy = jnp.asarray(rng.randn(4, 16, 16, 8), jnp.bfloat16)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1))

    @jax.jit
    def kernel_grad(x, k, dy):
        return jax.vjp(lambda k: conv2d_tap_kernel_grad(x, k, *args, by_row), k)[1](dy)[0]

    got = kernel_grad(x, k, dy)
    f32 = (a.astype(jnp.float32) for a in (x, k, dy))
    want = kernel_grad(*f32).astype(jnp.bfloat16)     # exact products, float32 sums, one rounding
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=1e-2, atol=1e-2)
    assert float(jnp.mean((got == want).astype(jnp.float32))) > 0.9


@pytest.mark.slow   # two gradient programs of the whole backbone: ~30 s on an idle 2-core CPU
def test_tiny_slowfast_outputs_and_gradients_agree():
    cfg = get_config().model.backbone
    clips = jnp.asarray(np.random.RandomState(1).randn(1, 8, 32, 32, 3).astype(np.float32))
    results = {}
    for path in ("native", "folded"):
        model = SlowFast(cfg, conv3d=path, rngs=nnx.Rngs(0))
        assert {m.path for _, m in nnx.iter_graph(model) if isinstance(m, Conv3d)} == {path}
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(p, graphdef=graphdef, rest=rest):
            slow, fast = nnx.merge(graphdef, p, rest)(clips)
            return jnp.sum(slow * jnp.cos(slow)) + jnp.sum(fast * jnp.sin(fast)), (slow, fast)

        (_, outs), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results[path] = (outs, grads)
    (outs_n, grads_n), (outs_f, grads_f) = results["native"], results["folded"]
    for a, b in zip(outs_n, outs_f, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    leaves_n, leaves_f = jax.tree.leaves(grads_n), jax.tree.leaves(grads_f)
    assert len(leaves_n) == len(leaves_f) > 0
    for a, b in zip(leaves_n, leaves_f, strict=True):
        scale = max(float(jnp.max(jnp.abs(a))), 1.0)
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-5)


@pytest.mark.parametrize("frames,taps,pad,stride,dilation",
                         [(5, 3, 1, 1, 1), (8, 5, 2, 1, 1), (8, 3, 3, 1, 2), (8, 3, 1, 2, 1), (2, 5, 2, 1, 1),
                          (1, 3, 1, 1, 1), (4, 2, 0, 2, 1), (3, 3, 3, 2, 2)])
def test_shift_and_sum_taps_equals_padding_the_products_once(frames, taps, pad, stride, dilation):
    """The per-tap slice + pad form sums exactly what padding all products once and slicing each tap does."""
    t_out = (frames + 2 * pad - dilation * (taps - 1) - 1) // stride + 1
    products = jnp.asarray(np.random.default_rng(frames * taps).standard_normal((2, frames, 3, 2, taps, 4)),
                           jnp.float32)
    padded = jnp.pad(products, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0), (0, 0)))
    expected = sum(padded[:, i * dilation: i * dilation + stride * (t_out - 1) + 1: stride, :, :, i]
                   for i in range(taps))
    np.testing.assert_array_equal(np.asarray(layers._shift_and_sum_taps(products, pad, stride, dilation, t_out)),
                                  np.asarray(expected))
