"""Times `acar_jax.ops.roi_align` against `torchvision.ops.roi_align` on CPU, forward and forward+backward.

    python benchmarks/roi_align.py [--boxes 512] [--channels 1024] [--repeats 7] [--threads 0]

The case is the ACAR head's: a `[1, 16, 29, C]` map (torch NCHW `[1, C, 16, 29]`), random boxes inside the
map (x1 < x2, y1 < y2, at least one cell wide), output 7x7, adaptive sampling (-1), `aligned=False`. The
backward pass is the gradient with respect to the features for a fixed random cotangent. JAX runs jit-compiled
with `block_until_ready`; compilation and one warm-up call are excluded; the table shows the median of
`--repeats` timed calls and the ratio JAX / torchvision (below 1 means JAX is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch  # before anything that may import tensorflow: the other order segfaults in torchvision ops
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from acar_jax.ops import roi_align  # noqa: E402

HEIGHT, WIDTH, OUT = 16, 29, 7


def make_case(num_boxes: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """features [1, H, W, C], rois [K, 5] inside the map, cotangent [K, 7, 7, C]; all float32."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((1, HEIGHT, WIDTH, channels), dtype=np.float32)
    size = np.array([WIDTH, HEIGHT], np.float32)
    corner = rng.uniform(0.0, 1.0, (num_boxes, 2)) * (size - 1.0)
    extent = rng.uniform(1.0, 1.0 + size - 1.0, (num_boxes, 2))
    far = np.minimum(corner + extent, size)
    rois = np.concatenate([np.zeros((num_boxes, 1)), corner, far], axis=1).astype(np.float32)
    cotangent = rng.standard_normal((num_boxes, OUT, OUT, channels), dtype=np.float32)
    return features, rois, cotangent


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def jax_timings(features, rois, cotangent, repeats: int) -> tuple[float, float]:
    """(forward, forward+backward) seconds of the jit-compiled JAX RoIAlign."""
    feats, boxes, cot = jnp.asarray(features), jnp.asarray(rois), jnp.asarray(cotangent)
    align = lambda f, r: roi_align(f, r, OUT, 1.0, -1, False)
    forward = jax.jit(align)

    @jax.jit
    def forward_backward(f, r, c):
        out, vjp = jax.vjp(lambda x: align(x, r), f)
        return out, vjp(c)[0]

    fwd = median_seconds(lambda: forward(feats, boxes).block_until_ready(), repeats)
    fwd_bwd = median_seconds(lambda: jax.block_until_ready(forward_backward(feats, boxes, cot)), repeats)
    return fwd, fwd_bwd


def torch_timings(features, rois, cotangent, repeats: int) -> tuple[float, float]:
    """(forward, forward+backward) seconds of torchvision's CPU RoIAlign on the same case, NCHW."""
    feats = torch.from_numpy(features).permute(0, 3, 1, 2).contiguous()
    boxes = torch.from_numpy(rois)
    cot = torch.from_numpy(cotangent).permute(0, 3, 1, 2).contiguous()
    align = lambda f: torchvision.ops.roi_align(f, boxes, OUT, 1.0, -1, False)

    def forward():
        with torch.no_grad():
            return align(feats)

    def forward_backward():
        leaf = feats.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(align(leaf), leaf, cot)
        return grad

    return median_seconds(forward, repeats), median_seconds(forward_backward, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=512)
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    case = make_case(args.boxes, args.channels, args.seed)
    jax_fwd, jax_fb = jax_timings(*case, args.repeats)
    torch_fwd, torch_fb = torch_timings(*case, args.repeats)
    print(f"RoIAlign, {args.boxes} boxes on [1, {HEIGHT}, {WIDTH}, {args.channels}], output {OUT}x{OUT}, "
          f"sampling -1, aligned False; median of {args.repeats}; jax {jax.__version__} "
          f"({jax.default_backend()}), torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{'pass':<18}{'jax (ms)':>10}{'torch (ms)':>12}{'jax/torch':>11}")
    for name, j, t in [("forward", jax_fwd, torch_fwd), ("forward+backward", jax_fb, torch_fb)]:
        print(f"{name:<18}{j * 1e3:>10.1f}{t * 1e3:>12.1f}{j / t:>10.2f}x")


if __name__ == "__main__":
    main()
