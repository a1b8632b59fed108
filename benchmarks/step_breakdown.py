"""Where the train step's time goes: the step split into separately compiled sub-programs, each timed and
counted (XLA's FLOPs), against what this device sustains on a plain float32 matmul.

    python benchmarks/step_breakdown.py [--config configs/ava_slowfast_r50_acar.py] [--batch 2] [--frames 32]
                                        [--height 224] [--width 224] [--boxes 4] [--steps 3] [--matmul 2048]

Rows: a square f32 matmul (`--matmul` N; the attainable GFLOP/s), then the R50 ACAR step's parts: backbone
forward, backbone forward + backward (a vjp with a fixed cotangent, so no head), head forward + backward on fixed
backbone features, the optimizer update alone, and the whole jitted train step. The parts do not add exactly to
the step (the step fuses across their borders), but they say which part to work on. `--torch` adds the same
parts of the PyTorch oracle model (tests/helpers) on `--threads` threads for the backbone rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from acar_jax.models.detector import create_model  # noqa: E402
from acar_jax.models.layers import resolve_conv3d  # noqa: E402
from acar_jax.training import optim  # noqa: E402
from benchmarks.train_step import Shape, compiled_flops, configure, jax_train, random_batch, timed  # noqa: E402


def compile_and_time(fn, args, steps: int) -> tuple[list[float], float]:
    compiled = jax.jit(fn).lower(*args).compile()
    return timed(lambda: compiled(*args), steps), compiled_flops(compiled)


def matmul_row(n: int, steps: int) -> tuple[list[float], float]:
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    return compile_and_time(lambda x, y: x @ y, (a, b), steps)


def parts(config, shape: Shape, steps: int) -> list[tuple[str, list[float], float]]:
    """(name, times, flops) of the backbone forward, backbone fwd+bwd, head fwd+bwd and optimizer."""
    model = create_model(config)
    batch = random_batch(shape, int(config.model.num_classes))
    clips = jnp.asarray(batch["clips"])
    bb_def, bb_params, bb_rest = nnx.split(model.backbone, nnx.Param, ...)

    def backbone(p, x):
        return nnx.merge(bb_def, p, bb_rest, copy=True)(x)

    rows = []
    times, flops = compile_and_time(backbone, (bb_params, clips), steps)
    rows.append(("backbone fwd", times, flops))
    slow, fast = jax.jit(backbone)(bb_params, clips)
    cot = (jnp.ones_like(slow), jnp.ones_like(fast))

    def backbone_grad(p, x, cot):
        _, vjp = jax.vjp(lambda q: backbone(q, x), p)
        return vjp(cot)[0]

    times, flops = compile_and_time(backbone_grad, (bb_params, clips, cot), steps)
    rows.append(("backbone fwd+bwd", times, flops))

    head_def, head_params, head_rest = nnx.split(model.head, nnx.Param, ...)
    boxes, mask, valid = (jnp.asarray(batch[k]) for k in ("boxes", "box_mask", "valid_hw"))
    padded = tuple(batch["clips"].shape[2:4])

    def head_loss(p, slow, fast):
        head = nnx.merge(head_def, p, head_rest, copy=True)
        return jnp.sum(head(slow, fast, boxes, mask, valid, padded, train=False) ** 2)

    times, flops = compile_and_time(jax.grad(head_loss, argnums=(0, 1, 2)), (head_params, slow, fast), steps)
    rows.append(("head fwd+bwd", times, flops))

    params = nnx.state(model, nnx.Param)
    tx = optim.gradient_transformation(config.train.optimizer)
    opt_state = tx.init(params)

    def update(params, grads, opt_state):
        direction, opt_state = tx.update(grads, opt_state, params)
        return optim.apply_updates(params, direction, jnp.float32(0.01)), opt_state

    times, flops = compile_and_time(update, (params, params, opt_state), steps)
    rows.append(("optimizer", times, flops))
    return rows


def torch_parts(config, shape: Shape, steps: int, threads: int) -> list[tuple[str, list[float]]]:
    import torch

    from benchmarks.train_step import torch_model
    torch.set_num_threads(threads)
    model = torch_model(config)
    model.eval()
    clips = torch.from_numpy(random_batch(shape, 1)["clips"]).permute(0, 4, 1, 2, 3)
    backbone = model["backbone"]

    def forward():
        with torch.no_grad():
            backbone(clips)

    def forward_backward():
        backbone.zero_grad(set_to_none=True)
        slow, fast = backbone(clips)
        (slow.sum() + fast.sum()).backward()

    return [("backbone fwd", timed(forward, steps)), ("backbone fwd+bwd", timed(forward_backward, steps))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "ava_slowfast_r50_acar.py"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048, help="N of the N x N x N f32 matmul row")
    parser.add_argument("--conv3d", default=None, choices=("auto", "native", "folded"))
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch oracle's backbone")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads")
    args = parser.parse_args()
    config = configure(args.config, None, args.conv3d)
    shape = Shape(args.batch, args.frames, args.height, args.width, args.boxes)

    rows = [(f"matmul {args.matmul}^3 f32", *matmul_row(args.matmul, args.steps))]
    rows += parts(config, shape, args.steps)
    step_times, step_flops, _ = jax_train(config, shape, args.steps)
    rows.append(("train step", step_times, step_flops))
    step = min(step_times)
    print(f"{Path(args.config).name}, {jax.device_count()} x {jax.devices()[0].device_kind}, batch {shape}, "
          f"conv3d {resolve_conv3d(str(config.model.conv3d))}; {args.steps} timed calls; load average "
          f"{open('/proc/loadavg').read().split()[0] if os.path.exists('/proc/loadavg') else '-'}")
    print(f"{'part':<24}{'min (ms)':>10}{'med (ms)':>10}{'GFLOP':>9}{'GFLOP/s':>9}{'% step':>8}")
    for name, times, flops in rows:
        lo = min(times)
        share = f"{100 * lo / step:.0f}%" if not name.startswith("matmul") else ""
        print(f"{name:<24}{lo * 1e3:>10.0f}{statistics.median(times) * 1e3:>10.0f}{flops / 1e9:>9.1f}"
              f"{flops / lo / 1e9:>9.1f}{share:>8}")
    if args.torch:
        for name, times in torch_parts(config, shape, args.steps, args.threads):
            print(f"{'torch ' + name:<24}{min(times) * 1e3:>10.0f}{statistics.median(times) * 1e3:>10.0f}")


if __name__ == "__main__":
    main()
