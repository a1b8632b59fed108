"""Shared NTHWC building blocks: 3-D convolution with a compute dtype, frozen BatchNorm, stem max pool.

Parameters are always float32; `dtype` is only the compute dtype of convolutions (bf16 runs the
MXU/tensor-core path while the weights, the BatchNorm statistics and the optimiser stay in float32).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Triple = tuple[int, int, int]

CONV3D_PATHS = ("auto", "native", "folded")   # config.model.conv3d
KERNEL_GRADS = ("auto", "taps", "xla")        # Conv3d(kernel_grad=...): see Conv3d
# A stem's 2-D convolution (taps as outputs, "auto") with fewer outputs (kt * out) than this reads its input as
# column pairs (`_conv_on_column_pairs`): XLA:CPU's 7x7 stride-2 convolution of 3 channels ran 20-32 outputs (the
# tiny model's 5 x 4) 3-13x slower than the paired form, while from 40 (R50's 5 x 8 and 64) the direct one was
# 5-15% ahead (measured, docs/performance.md).
STEM_PAIRED_BELOW_OUTPUTS = 40


def resolve_conv3d(path: str, backend: str | None = None) -> str:
    """config.model.conv3d -> "native" or "folded". "auto" picks folded on XLA:CPU, whose 3-D convolutions are
    several times slower than the same sums as 2-D convolutions / matmuls (measured, README "Performance"), and
    the native 3-D convolution elsewhere (cuDNN and the TPU convolution emitter handle 3-D directly; the folded
    form costs an extra copy of each input per temporal tap there)."""
    if path not in CONV3D_PATHS:
        raise ValueError(f"model.conv3d must be one of {CONV3D_PATHS}, got {path!r}")
    if path != "auto":
        return path
    return "folded" if (backend or jax.default_backend()) == "cpu" else "native"


def _triple(value: int | Sequence[int], name: str) -> Triple:
    """Expands an int to (t, h, w); checks a sequence has 3 entries."""
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name}: expected an int or 3 ints (t, h, w), got {value}")
    return value  # type: ignore[return-value]


def he_normal_fan_out(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """He (MSRA) normal init with fan_out = prod(kernel) * out_channels, as ResNets and PySlowFast use.

    Why: the reference starts from pretrained weights; a from-scratch run (the synthetic default job) needs an
    init that keeps ReLU activations at unit scale, and fan_out is the ResNet convention.
    """
    *spatial, _, out_ch = shape
    fan_out = int(np.prod(spatial)) * out_ch
    # Drawn at a power-of-two length and cut: eager construction then compiles a handful of random-number
    # programs instead of one per kernel shape (measured: tiny SlowFast build 21 s -> ~2 s on 2 CPU cores).
    size = int(np.prod(shape))
    padded = max(1024, 1 << (size - 1).bit_length())
    draw = jax.random.normal(key, (padded,), dtype)[:size].reshape(shape)
    return draw * np.sqrt(2.0 / fan_out).astype(dtype)


Pads2 = tuple[tuple[int, int], tuple[int, int]]


def _conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Pads2,
            dilation: tuple[int, int]) -> jax.Array:
    """NHWC x HWIO 2-D convolution (XLA's)."""
    return jax.lax.conv_general_dilated(x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _kernel_grad_by_matmul(x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], strides: tuple[int, int],
                           padding: Pads2, dilation: tuple[int, int], by_row: bool) -> jax.Array:
    """dK[i, j] = X_ij^T dY summed over every output position, as matmuls (float32 result).

    X_ij is the (padded) input window that tap (i, j) reads: a strided slice, [N * H' * W', in]. Per tap
    (`by_row` False): one matmul per X_ij. Per kernel row (True): the kw windows of row i side by side,
    P_i [N * H' * W', kw * in] (an im2col of one row: for a stem's 3 channels a matmul 21 columns deep instead
    of 3, with one row's patches alive at a time), one matmul per row. The contraction is over the rows of both
    operands, which the matmul reads in place (no transposed copies). Accumulation is in float32 whatever the
    inputs' dtype, as XLA:CPU's bf16 convolutions accumulate; the caller rounds once.
    """
    kh, kw, cin, cout = kernel_shape
    (sh, sw), (dh, dw) = strides, dilation
    n, ho, wo = dy.shape[:3]
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    dy2 = dy.reshape((-1, cout))
    parts = []
    for i in range(kh):
        windows = [jax.lax.slice(xp, (0, i * dh, j * dw, 0),
                                 (n, i * dh + sh * (ho - 1) + 1, j * dw + sw * (wo - 1) + 1, cin), (1, sh, sw, 1))
                   for j in range(kw)]
        for lhs in ([jnp.concatenate(windows, axis=-1)] if by_row else windows):
            parts.append(jax.lax.dot_general(lhs.reshape((-1, lhs.shape[-1])), dy2, (((0,), (0,)), ((), ())),
                                             preferred_element_type=jnp.float32))
    return jnp.stack(parts).reshape((kh, kw, cin, cout))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv2d_tap_kernel_grad(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Pads2,
                           dilation: tuple[int, int], by_row: bool = False) -> jax.Array:
    """XLA's 2-D convolution (forward and input gradient), with the kernel gradient as one matmul per tap
    (`by_row` False) or per kernel row (True, for inputs with few channels: `_kernel_grad_by_matmul`).

    Why: XLA:CPU computes a convolution's kernel gradient as a convolution with the batch as contraction plus
    transposed copies of both operands, the largest item of the R50 CPU train step's profile (the stems'
    above all); matmuls compute the same sums faster where measured (docs/performance.md). Inside `shard_map`,
    `kernel` must vary over the same manual axes as `x` (`vary_like`), since the kernel cotangent does.
    """
    return _conv2d(x, kernel, strides, padding, dilation)


def _tap_fwd(x, kernel, strides, padding, dilation, by_row):
    return _conv2d(x, kernel, strides, padding, dilation), (x, kernel)


def _tap_bwd(strides, padding, dilation, by_row, residuals, dy):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x_: _conv2d(x_, kernel, strides, padding, dilation), x)
    (dx,) = input_vjp(dy)   # dead code under jit where x is data (the stems): XLA drops it
    dk = _kernel_grad_by_matmul(x, dy, kernel.shape, strides, padding, dilation, by_row)
    return dx, dk.astype(kernel.dtype)


conv2d_tap_kernel_grad.defvjp(_tap_fwd, _tap_bwd)


def _conv_on_column_pairs(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Pads2,
                          dilation: tuple[int, int]) -> jax.Array:
    """A 2-D convolution with column stride 2 (and no column dilation) as one with column stride 1 on the input
    read as column pairs: x [N, H, W, in] padded -> [N, H, W'/2, 2 * in], the kernel's kw columns zero-padded to
    an even count -> [kh, kw'/2, 2 * in, out]; kernel gradient one matmul per kernel row
    (`conv2d_tap_kernel_grad(by_row=True)`). Output column w reads padded columns 2w + j = 2(w + j // 2) + j % 2,
    i.e. pair w + j // 2, half j % 2: the same products, summed in the same order by the kernel gradient (its
    pads' zero columns drop out). Why: the stems' 3-channel convolution is erratic in its output count on
    XLA:CPU (STEM_PAIRED_BELOW_OUTPUTS); reading 6 channels at half the width is not, and costs nothing to lay
    out (a reshape)."""
    (sh, sw), ((ph0, ph1), (pw0, pw1)), (dh, dw) = strides, padding, dilation
    if (sw, dw) != (2, 1):
        raise ValueError(f"column pairs need column stride 2 and dilation 1, got stride {sw}, dilation {dw}")
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    width = w + pw0 + pw1
    w_out = (width - kw) // 2 + 1
    pairs = jnp.pad(x, ((0, 0), (0, 0), (pw0, pw1 + width % 2), (0, 0))).reshape((n, h, (width + 1) // 2, 2 * cin))
    kw_pairs = (kw + 1) // 2
    paired = jnp.pad(kernel, ((0, 0), (0, 2 * kw_pairs - kw), (0, 0), (0, 0))).reshape((kh, kw_pairs, 2 * cin, cout))
    out = conv2d_tap_kernel_grad(pairs, vary_like(paired, pairs), (sh, 1), ((ph0, ph1), (0, 0)), (dh, 1), True)
    return out[:, :, :w_out]


def vary_like(value: jax.Array, like: jax.Array) -> jax.Array:
    """`value` cast to vary over every manual mesh axis `like` varies over (no-op outside `shard_map`).

    Why: a `custom_vjp` rule's cotangent must have its primal's type. A replicated kernel applied to a
    batch-sharded input has a per-device (varying) kernel gradient; casting the kernel to varying before the
    call makes autodiff sum that gradient over the axes (the cast's transpose is a `psum`), as it does for
    XLA's own convolution.
    """
    missing = jax.typeof(like).mat.varying - jax.typeof(value).mat.varying
    return jax.lax.pcast(value, tuple(missing), to="varying") if missing else value


def _temporal_conv_shifting_outputs(x: jax.Array, kernel: jax.Array, pad: int, dilation: int) -> jax.Array:
    """A stride-1 kt x 1 x 1 convolution of x [B, T, H, W, in] with kernel [kt, in, out], padding `pad` frames.

    out[t] = sum_i x[t + i * dilation - pad] @ kernel[i]: every frame is multiplied by all kt kernel taps in one
    matmul ([B*T*H*W, in] @ [in, kt*out]), then the kt products are shifted in time and summed. Why: shifting the
    inputs instead copies a padded, shifted input per tap before its matmul; the bottlenecks' temporal convs read
    4x more channels than they write, and on XLA:CPU this form ran their forward 1.2-7x and forward + backward
    1.4-12x faster (R50 layers, README "Performance"). Same sums; only the summation order of the taps differs.
    """
    kt, cin, cout = kernel.shape
    t_out = x.shape[1] + 2 * pad - dilation * (kt - 1)
    products = x.reshape((-1, cin)) @ jnp.moveaxis(kernel, 0, 1).reshape((cin, kt * cout))
    return _shift_and_sum_taps(products.reshape((*x.shape[:4], kt, cout)), pad, 1, dilation, t_out)


def _shift_and_sum_taps(products: jax.Array, pad: int, stride: int, dilation: int, t_out: int) -> jax.Array:
    """products [B, T, H, W, kt, out] (every frame times every temporal tap) -> [B, t_out, H, W, out]:
    out[t] = sum_i products[t * stride + i * dilation - pad, tap i], zero outside the clip.

    Each tap's valid frames are sliced and padded on their own, so XLA fuses the pads into the sum; padding the
    products once and slicing the taps from that copy materialised it (R50's fast stem: 54 ms of 105)."""
    frames, out = products.shape[1], None
    for i in range(products.shape[4]):
        offset = i * dilation - pad                        # output t reads frame t * stride + offset
        t_lo = max(0, -(offset // stride))
        t_hi = min(t_out, (frames - 1 - offset) // stride + 1)
        if t_hi <= t_lo:
            continue
        start = t_lo * stride + offset
        part = products[:, start: start + stride * (t_hi - t_lo - 1) + 1: stride, :, :, i]
        part = jnp.pad(part, ((0, 0), (t_lo, t_out - t_hi), (0, 0), (0, 0), (0, 0)))
        out = part if out is None else out + part
    if out is None:
        return jnp.zeros((products.shape[0], t_out, *products.shape[2:4], products.shape[5]), products.dtype)
    return out


class Conv3d(nnx.Module):
    """Bias-free 3-D convolution, NTHWC input, kernel `[kt, kh, kw, in, out]` (PyTorch `Conv3d(bias=False)`).

    Padding is explicit and symmetric per axis, exactly as PyTorch's `padding=(pt, ph, pw)`. `path`: "native"
    (one 3-D `conv_general_dilated`) or "folded" (time folded into the batch; see `__call__`), same sums and
    parameters; `resolve_conv3d` picks one per backend. `kernel_grad` (folded path only; config
    model.conv_kernel_grad): "auto" (default) runs the stems (at most 3 input channels) with their temporal taps
    as output channels and their kernel gradient as one matmul per kernel row (`_stem_by_rows`; on column pairs
    below STEM_PAIRED_BELOW_OUTPUTS outputs), XLA's kernel gradient elsewhere; "taps" computes the kernel
    gradient of every kernel it runs as one 2-D convolution (the stride-1 spatial kernels and the stems) as one
    matmul per tap; "xla" leaves every kernel gradient to XLA.
    Same sums in each; which is faster per layer was measured on a quiet machine (docs/performance.md;
    benchmarks/step_breakdown.py --layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1, dtype: jnp.dtype | str = jnp.float32, path: str = "folded",
                 kernel_grad: str = "auto", rngs: nnx.Rngs):
        if path not in ("native", "folded"):
            raise ValueError(f"Conv3d path must be 'native' or 'folded' (resolve 'auto' first), got {path!r}")
        if kernel_grad not in KERNEL_GRADS:
            raise ValueError(f"Conv3d kernel_grad must be one of {KERNEL_GRADS}, got {kernel_grad!r}")
        self.path = path
        self.kernel_grad = kernel_grad
        self.kernel_size = _triple(kernel_size, "kernel_size")
        self.stride = _triple(stride, "stride")
        self.padding = _triple(padding, "padding")
        self.dilation = _triple(dilation, "dilation")
        self.dtype = jnp.dtype(dtype)  # accepts "bfloat16" as written in config.model.dtype
        shape = (*self.kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(he_normal_fan_out(rngs.params(), shape))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, H, W, in] -> [B, T', H', W', out] in `self.dtype`.

        Computed with time folded into the batch: a stride-1 kt x 1 x 1 kernel (kt > 1) as one matmul of every
        frame with all taps, shifted in time and summed (`_temporal_conv_shifting_outputs`); any other 1x1
        kernel as a sum of matmuls over its kt temporal taps (on every sh-th row and sw-th column); a strided
        spatial kernel reading more than 3 channels as a sum of matmuls over all its taps on strided slices; any
        other as one 2-D convolution with the taps stacked on the input channels (only the fast stem has both
        kt > 1 and a spatial extent, and it reads 3 channels), whose kernel gradient is one matmul per spatial
        tap when stride-1 (see `kernel_grad`). The same sums as the 3-D convolution, but XLA:CPU runs them
        several times faster (measured on the tiny
        SlowFast: gradient 5.2 s -> 0.8 s; strided layers: docs/performance.md).
        """
        kt, kh, kw = self.kernel_size
        st, sh, sw = self.stride
        pt, ph, pw = self.padding
        dt, dh, dw = self.dilation
        kernel = self.kernel[...].astype(self.dtype)
        x = x.astype(self.dtype)
        t_out = (x.shape[1] + 2 * pt - dt * (kt - 1) - 1) // st + 1
        if t_out < 1:
            raise ValueError(f"Conv3d: {x.shape[1]} frames (padding {pt}) are fewer than the temporal "
                             f"kernel {kt} (dilation {dt}) needs")
        if self.path == "native":
            return jax.lax.conv_general_dilated(
                x, kernel, window_strides=self.stride, padding=[(pt, pt), (ph, ph), (pw, pw)],
                rhs_dilation=self.dilation, dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
        if kt > 1 and (kh, kw) == (1, 1) and (st, sh, sw) == (1, 1, 1):
            return _temporal_conv_shifting_outputs(x, kernel[:, 0, 0], pt, dt)
        conv_args = ((sh, sw), ((ph, ph), (pw, pw)), (dh, dw))
        if self.kernel_grad == "auto" and x.shape[-1] <= 3 and (kh, kw) != (1, 1):
            return self._stem_by_rows(x, kernel, t_out, conv_args)
        if pt:
            x = jnp.pad(x, ((0, 0), (pt, pt), (0, 0), (0, 0), (0, 0)))
        batch = x.shape[0]
        taps = [x[:, i * dt: i * dt + st * (t_out - 1) + 1: st] for i in range(kt)]   # kt x [B, T', H, W, in]
        if (kh, kw) == (1, 1):
            # A 1x1 kernel reads only every sh-th row and sw-th column: slice, then matmul. Why not a strided
            # 1x1 convolution: XLA:CPU runs its input gradient as an lhs-dilated convolution, ~15x slower than
            # this slice + matmul (measured: R50's 320->512 downsample, forward + backward).
            if (ph, pw) != (0, 0):
                taps = [jnp.pad(tap, ((0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0))) for tap in taps]
            taps = [tap[:, :, ::sh, ::sw] for tap in taps]
            out = sum(tap.reshape((-1, tap.shape[-1])) @ kernel[i, 0, 0] for i, tap in enumerate(taps))
            return out.reshape((*taps[0].shape[:-1], out.shape[-1]))
        if (sh, sw) != (1, 1) and x.shape[-1] > 3:
            # A strided spatial kernel (not a stem: those read 3 channels) as one matmul per kernel tap on strided
            # slices, for the same reason as above (its input gradient would be an lhs-dilated convolution).
            h_out = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w_out = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            out = 0
            for t, tap in enumerate(taps):
                tap = jnp.pad(tap, ((0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0)))
                for i in range(kh):
                    for j in range(kw):
                        part = tap[:, :, i * dh: i * dh + sh * (h_out - 1) + 1: sh,
                                   j * dw: j * dw + sw * (w_out - 1) + 1: sw]
                        out = out + part.reshape((-1, part.shape[-1])) @ kernel[t, i, j]
            return out.reshape((batch, t_out, h_out, w_out, kernel.shape[-1]))
        frames = jnp.concatenate(taps, axis=-1) if kt > 1 else taps[0]                 # [B, T', H, W, kt*in]
        frames = frames.reshape((-1, *frames.shape[2:]))                                # [B*T', H, W, kt*in]
        kernel = jnp.moveaxis(kernel, 0, 2).reshape((kh, kw, -1, kernel.shape[-1]))     # [kh, kw, kt*in, out]
        if self.kernel_grad == "taps":
            out = conv2d_tap_kernel_grad(frames, vary_like(kernel, frames), *conv_args, False)
        else:
            out = _conv2d(frames, kernel, *conv_args)
        return out.reshape((batch, t_out, *out.shape[1:]))

    def _stem_by_rows(self, x: jax.Array, kernel: jax.Array, t_out: int, conv_args: tuple) -> jax.Array:
        """A stem (x [B, T, H, W, <= 3]) as one 2-D convolution of every frame with all kt temporal taps as
        output channels, shifted in time and summed (as `_temporal_conv_shifting_outputs`), its kernel gradient
        one matmul per kernel row (`conv2d_tap_kernel_grad(by_row=True)`), on column pairs
        (`_conv_on_column_pairs`) below STEM_PAIRED_BELOW_OUTPUTS outputs. Why: XLA:CPU's kernel gradient of the
        stems was the R50 step's largest item (fast stem 0.65 s of ~7 s); this form ran the fast stem's forward
        + kernel gradient 1.35x and the slow stem's 1.4x faster (docs/performance.md)."""
        kt, kh, kw, cin, cout = kernel.shape
        (pt,), (st,), (dt,) = self.padding[:1], self.stride[:1], self.dilation[:1]
        taps_out = jnp.moveaxis(kernel, 0, 3).reshape((kh, kw, cin, kt * cout))         # [kh, kw, in, kt*out]
        flat = x.reshape((-1, *x.shape[2:]))
        (_, sw), _, (_, dw) = conv_args
        if kt * cout < STEM_PAIRED_BELOW_OUTPUTS and (sw, dw) == (2, 1):
            products = _conv_on_column_pairs(flat, taps_out, *conv_args)
        else:
            products = conv2d_tap_kernel_grad(flat, vary_like(taps_out, flat), *conv_args, True)
        products = products.reshape((*x.shape[:2], *products.shape[1:3], kt, cout))
        return _shift_and_sum_taps(products, pt, st, dt, t_out)


class FrozenBatchNorm(nnx.Module):
    """BatchNorm that always normalises with its running statistics (the reference's `freeze_bn`).

    `scale`/`bias` are trainable `nnx.Param`; `mean`/`var` are `nnx.BatchStat` and never updated (no
    train/eval switch exists because both modes compute the same thing). Equals `BatchNorm3d.eval()`.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None):
        del rngs  # deterministic init (PyTorch's: scale 1, bias 0, mean 0, var 1); a uniform signature
        self.eps = float(eps)
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [..., C] -> (x - mean) / sqrt(var + eps) * scale + bias, as one multiply-add in x.dtype."""
        inv = self.scale[...] * jax.lax.rsqrt(self.var[...] + self.eps)
        shift = self.bias[...] - self.mean[...] * inv
        return x * inv.astype(x.dtype) + shift.astype(x.dtype)


def stem_max_pool(x: jax.Array) -> jax.Array:
    """PyTorch `MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))` on NTHWC; pads with -inf.

    The gradient goes to the first maximum of each window in row-major order, as PyTorch's (and XLA's
    select-and-scatter) does, but through `_stem_pool_windows`' strided slices: XLA:CPU expands the
    select-and-scatter of `reduce_window`'s gradient into iota/scatter loops that took 238 ms for R50's slow stem
    pool (forward + backward, batch 2 x 8 x 112^2 x 64) against 50 ms this way (docs/performance.md).
    """
    return _stem_max_pool(x, x.shape[2:4])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _stem_max_pool(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
    del hw  # the input's (H, W), for the backward
    return jax.lax.reduce_window(
        x, np.array(-np.inf, x.dtype), jax.lax.max,
        window_dimensions=(1, 1, 3, 3, 1), window_strides=(1, 1, 2, 2, 1),
        padding=((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)),
    )


def _stem_pool_windows(x: jax.Array, pad_value: float, out_hw: tuple[int, int]) -> list[jax.Array]:
    """The 9 taps of the 3x3, stride-2, pad-1 pool window (tap k = row k // 3, column k % 3), each [..., Ho, Wo, C]."""
    (ho, wo), pad = out_hw, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0))
    padded = jnp.pad(x, pad, constant_values=pad_value)
    return [padded[:, :, i: i + 2 * (ho - 1) + 1: 2, j: j + 2 * (wo - 1) + 1: 2] for i in range(3) for j in range(3)]


def _stem_pool_fwd(x: jax.Array, hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    out_hw = ((hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1)
    windows = _stem_pool_windows(x, -np.inf, out_hw)
    best, tap = windows[0], jnp.zeros(windows[0].shape, jnp.int8)
    for k, value in enumerate(windows[1:], 1):
        take = (value > best) | jnp.isnan(value)   # PyTorch's rule: a later element wins only if greater (or NaN)
        best, tap = jnp.where(take, value, best), jnp.where(take, jnp.int8(k), tap)
    return best, tap


def _stem_pool_bwd(hw: tuple[int, int], tap: jax.Array, dy: jax.Array) -> tuple[jax.Array]:
    zeros = vary_like(jnp.zeros((*tap.shape[:2], *hw, tap.shape[4]), dy.dtype), dy)   # varies as dy in shard_map
    _, windows_vjp = jax.vjp(lambda x: _stem_pool_windows(x, 0.0, tap.shape[2:4]), zeros)
    (dx,) = windows_vjp([jnp.where(tap == k, dy, 0) for k in range(9)])
    return (dx,)


_stem_max_pool.defvjp(_stem_pool_fwd, _stem_pool_bwd)


def torch_style_param_count(module: nnx.Module) -> int:
    """Number of trainable scalars, as PyTorch's `sum(p.numel() for p in model.parameters())`.

    BatchNorm scale and bias count; running statistics (`nnx.BatchStat`) do not.
    """
    params = nnx.state(module, nnx.Param)
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))
