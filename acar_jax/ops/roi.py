"""RoIAlign with `torchvision.ops.roi_align` semantics, channels-last, as two matmul-shaped contractions.

torchvision averages, per output bin, `grid_h x grid_w` bilinear samples; a sample outside `[-1, size]` on
either axis is zero, and both its weight and that out-of-range rule factor into a y part times an x part.
So one box's RoIAlign is `A_y F A_x^T`: `A_y [out_h, H]` holds, per output row, the bilinear weights of its
`grid_h` sample rows summed per source row and divided by `grid_h` (and `A_x [out_w, W]` likewise), and the
division by the total count `grid_h * grid_w` splits into one factor per axis. Exact, and a pair of dense
contractions instead of a gather per sample.

Static shapes: with `sampling_ratio <= 0` the grid is `ceil(roi_size / output_size)` per box and axis, a
value known only at run time. We draw a static number of samples per axis (`max_samples`) and mask the ones
at or past the box's own grid size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from acar_jax.core.batch import check_array

Pair = tuple[int, int]


def _positive_pair(value: int | Sequence[int], name: str) -> Pair:
    """Expands an int to (h, w); checks for two positive ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name}: expected a positive int or a pair of positive ints (h, w), got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name}: expected a positive int or a pair of positive ints (h, w), got {value!r}")
    return pair


def _check_inputs(features: jax.Array, rois: jax.Array) -> None:
    """Rejects wrong ranks, shapes and dtypes at the public boundary."""
    check_array(features, "features", "[N, H, W, C] (channels last)", (None,) * 4, np.floating)
    check_array(rois, "rois", "[K, 5] (batch index, x1, y1, x2, y2)", (None, 5), np.floating)
    if min(features.shape[1:3]) < 1:
        raise ValueError(f"features: expected H >= 1 and W >= 1, got shape {tuple(features.shape)}")


def _unfused(product: jax.Array) -> jax.Array:
    """The product, in a form XLA cannot contract with a following add into a fused multiply-add.

    Why: torchvision's CPU kernel rounds the product and the sum separately; under jit XLA:CPU contracts
    `a * b + c` into one FMA (measured: 7% of sample positions then differ by an ulp, up to ~4e-6 in the
    output, and a sample can flip across the `[-1, size]` validity edge). An optimisation barrier or a
    bitcast round trip is simplified away before fusion (measured); a select on the product is not, and this
    one is the identity, NaN included.
    """
    return jnp.where(jnp.isnan(product), jnp.asarray(jnp.nan, product.dtype), product)


def _true_divide(numerator: jax.Array, denominator: jax.Array | int) -> jax.Array:
    """`numerator / denominator`, rounded once, even when the denominator is a compile-time constant.

    Why: XLA rewrites `x / const` as `x * (1 / const)` (measured: 56% of `x / 7` off by an ulp vs
    torchvision's true division); a full-shaped denominator behind an optimisation barrier is opaque to it.
    """
    denominator = jnp.broadcast_to(jnp.asarray(denominator, numerator.dtype), numerator.shape)
    return numerator / jax.lax.optimization_barrier(denominator)


def _adaptive_grid(bin_size: jax.Array, bound: int) -> jax.Array:
    """torchvision's `ceil(roi_size / out)` samples per bin, clipped to `[0, bound]` (the documented bound).

    Clipped in float before the int cast: the ceil of a huge box, or NaN (no samples), must not overflow.
    """
    grid = jnp.clip(jnp.ceil(bin_size), 0, bound)
    return jnp.where(jnp.isnan(grid), 0, grid).astype(jnp.int32)


def _axis_weights(start: jax.Array, bin_size: jax.Array, grid: jax.Array, num_samples: int,
                  out_size: int, size: int) -> jax.Array:
    """`[K, out_size, size]` weights of one axis: per output bin, the mean over its samples of the 1-D
    bilinear weights, samples at index >= `grid` (and samples outside `[-1, size]`) contributing zero.

    Positions are computed in the order torchvision's kernel uses (`start + p*bin + (i+.5)*bin/grid`),
    without fused multiply-adds, so the float32 sample positions agree with it bit for bit.
    """
    dtype = start.dtype
    p = jnp.arange(out_size, dtype=dtype)[None, :, None]
    i = jnp.arange(num_samples)[None, None, :]
    start, bin_size, grid = start[:, None, None], bin_size[:, None, None], grid[:, None, None]
    grid_f = grid.astype(dtype)
    offsets = _true_divide((i.astype(dtype) + 0.5) * bin_size, grid_f)
    pos = start + _unfused(p * bin_size) + offsets  # [K, out, S]
    valid = (pos >= -1.0) & (pos <= size) & (i < grid)
    # torchvision: clamp below at 0; at or past the last row the sample sits exactly on it. Clipping before
    # the integer cast also keeps huge (masked) positions from overflowing int32.
    pos = jnp.clip(pos, 0.0, size - 1)
    low = jnp.floor(pos).astype(jnp.int32)
    high = jnp.minimum(low + 1, size - 1)
    frac = pos - low.astype(dtype)  # 0 on the last row, where low == high
    rows = jnp.arange(size)
    onehot_low = (low[..., None] == rows).astype(dtype)
    onehot_high = (high[..., None] == rows).astype(dtype)
    per_sample = (1.0 - frac)[..., None] * onehot_low + frac[..., None] * onehot_high  # [K, out, S, size]
    weights = jnp.sum(jnp.where(valid[..., None], per_sample, 0.0), axis=2)
    return weights / jnp.maximum(grid_f, 1.0)


def roi_align(features: jax.Array, rois: jax.Array, output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False,
              max_samples: int | Sequence[int] | None = None) -> jax.Array:
    """RoIAlign equal to `torchvision.ops.roi_align` (same argument meaning), channels last.

    Args:
      features: `[N, H, W, C]` floating feature maps.
      rois: `[K, 5]` rows of (batch index, x1, y1, x2, y2) in input coordinates; `spatial_scale` maps them
        onto the feature map. The batch index is truncated to an int as torchvision does; a row whose index is
        outside `[0, N)` gives zeros (torchvision reads out of bounds there).
      output_size: `out` or `(out_h, out_w)`.
      spatial_scale: multiplies the box coordinates (e.g. 1/16 for a stride-16 map).
      sampling_ratio: samples per bin and axis; `<= 0` is torchvision's adaptive grid, `ceil(roi_size / out)`
        per box and axis.
      aligned: shift boxes by -0.5 pixel (and allow boxes smaller than one pixel), as torchvision.
      max_samples: only for `sampling_ratio <= 0`: the static per-axis bound `(max_h, max_w)` (or one int) on
        the adaptive grid. Default `(ceil(H / out_h), ceil(W / out_w))`, which covers every box lying inside
        the feature map. A box whose adaptive grid exceeds the bound has its grid CLIPPED to the bound on that
        axis: it gets `max` evenly spaced samples per bin, i.e. what torchvision gives with that fixed
        sampling ratio, not the adaptive result. Pass a larger bound for exact results on oversize boxes;
        it costs `K * out * max * size` per axis, in the weight construction only.

    Sample positions are computed in float32 (or the rois' dtype if wider) exactly as torchvision's float32
    kernel does; pooling runs in float32 at least (bf16 features are upcast, the result cast back). With
    N > 1 images the image choice costs N times the work of the first contraction; callers that hold boxes
    per image (the model's `[B, N_max, 4]`) are cheaper vmapping over images with N == 1.

    Returns:
      `[K, out_h, out_w, C]` in `features.dtype`. Differentiable with respect to `features`; the boxes are
      treated as constants (`stop_gradient`), as torchvision returns no gradient for them. Works under jit and
      vmap (all arguments other than `features` and `rois` must be static Python values).
    """
    _check_inputs(features, rois)
    out_h, out_w = _positive_pair(output_size, "output_size")
    if not isinstance(sampling_ratio, (int, np.integer)) or isinstance(sampling_ratio, bool):
        raise ValueError(f"sampling_ratio: expected an int (<= 0 for the adaptive grid), got {sampling_ratio!r}")
    n, height, width, _ = features.shape
    if sampling_ratio > 0:
        bound_h = bound_w = int(sampling_ratio)
    elif max_samples is None:
        bound_h, bound_w = math.ceil(height / out_h), math.ceil(width / out_w)
    else:
        bound_h, bound_w = _positive_pair(max_samples, "max_samples")

    pos_dtype = jnp.promote_types(rois.dtype, jnp.float32)
    rois = jax.lax.stop_gradient(rois).astype(pos_dtype)
    offset = 0.5 if aligned else 0.0
    scale = jnp.asarray(spatial_scale, pos_dtype)
    x1, y1, x2, y2 = (_unfused(rois[:, c] * scale) - offset for c in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision forces malformed boxes to 1x1
        roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
    bin_h, bin_w = _true_divide(roi_h, out_h), _true_divide(roi_w, out_w)
    if sampling_ratio > 0:
        grid_h = grid_w = jnp.full(rois.shape[:1], sampling_ratio, jnp.int32)
    else:
        grid_h, grid_w = _adaptive_grid(bin_h, bound_h), _adaptive_grid(bin_w, bound_w)
    a_y = _axis_weights(y1, bin_h, grid_h, bound_h, out_h, height)  # [K, out_h, H]
    a_x = _axis_weights(x1, bin_w, grid_w, bound_w, out_w, width)  # [K, out_w, W]

    compute_dtype = jnp.promote_types(features.dtype, jnp.float32)
    batch = rois[:, 0].astype(jnp.int32)  # truncation toward zero, as torchvision's int cast
    image_onehot = (batch[:, None] == jnp.arange(n)).astype(compute_dtype)  # [K, N]; zeros if out of range
    out = _separable_pool(features.astype(compute_dtype), a_y.astype(compute_dtype),
                          a_x.astype(compute_dtype), image_onehot)
    return out.astype(features.dtype)


# Boxes per step of the loop in `_separable_pool`. Why a loop at all: the intermediate `A_x F` of all boxes at
# once is `[K, out_w, H, C]` (235 MB for 512 boxes on a 16 x 29 x 1024 map), written and re-read from memory;
# per 16 boxes it stays in cache. Measured on 2 CPU cores, 512 boxes: forward 230 ms unchunked, ~70 ms in
# chunks of 8..32 (4: ~75 ms, 64: ~115 ms); forward+backward ~1 s -> ~150 ms.
_BOX_CHUNK = 16


def _separable_pool(features: jax.Array, a_y: jax.Array, a_x: jax.Array, image_onehot: jax.Array) -> jax.Array:
    """`out[k] = A_y[k] F[b_k] A_x[k]^T` for `features [N, H, W, C]`, `a_y [K, oh, H]`, `a_x [K, ow, W]`.

    Boxes go through in chunks of `_BOX_CHUNK` (padded with all-zero weights, cut after).
    """
    num_boxes = a_y.shape[0]
    chunk = min(_BOX_CHUNK, max(num_boxes, 1))
    num_chunks = -(-num_boxes // chunk)
    pad = num_chunks * chunk - num_boxes
    chunks = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(num_chunks, chunk, *a.shape[1:])
              for a in (a_y, a_x, image_onehot)]
    out = jax.lax.map(lambda c: _pool_chunk(features, *c), chunks)  # [chunks, chunk, oh, ow, C]
    return out.reshape(num_chunks * chunk, *out.shape[2:])[:num_boxes]


def _pool_chunk(features: jax.Array, a_y: jax.Array, a_x: jax.Array, image_onehot: jax.Array) -> jax.Array:
    """`_separable_pool` on one chunk of boxes, as two contractions.

    The image selection is folded into the first contraction (over N*W) rather than gathering one map per box:
    no `[K, H, W, C]` tensor, and for N == 1 it is a plain GEMM. Contracting x first leaves the smaller
    intermediate `P [k, ow, H, C]` (H < W on the usual 16 x 29 map). The second contraction is batched over
    (box, output column) so that `h` is already in place in `P` (an einsum batched over the box alone makes
    XLA transpose `P` first); its `[k, ow, oh, C]` result is transposed at the end. HIGHEST precision: the
    default f32 matmul on GPU/TPU rounds through bf16/TF32, far above torchvision's float32 result.
    """
    highest = jax.lax.Precision.HIGHEST
    boxes, out_h, height = a_y.shape
    out_w = a_x.shape[1]
    a_xn = a_x[:, :, None, :] * image_onehot[:, None, :, None]  # [k, ow, N, W]
    partial = jnp.einsum("kjnw,nhwc->kjhc", a_xn, features, precision=highest)  # [k, ow, H, C]
    a_y_per_column = jnp.broadcast_to(a_y[:, None], (boxes, out_w, out_h, height))  # [k, ow, oh, H]
    out = jax.lax.dot_general(a_y_per_column, partial, (((3,), (2,)), ((0, 1), (0, 1))),
                              precision=highest)  # [k, ow, oh, C]
    return out.transpose(0, 2, 1, 3)
