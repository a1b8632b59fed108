"""Where the train step's time goes: the step split into separately compiled sub-programs, each timed and
counted (XLA's FLOPs), against what this device sustains on a plain float32 matmul.

    python benchmarks/step_breakdown.py [--config configs/ava_slowfast_r50_acar.py] [--batch 2] [--frames 32]
                                        [--height 224] [--width 224] [--boxes 4] [--steps 3] [--matmul 2048]

Rows: a square f32 matmul (`--matmul` N; the attainable GFLOP/s), then the R50 ACAR step's parts: backbone
forward, backbone forward + backward (a vjp with a fixed cotangent, so no head), head forward + backward on fixed
backbone features, the optimizer update alone, and the whole jitted train step. The parts do not add exactly to
the step (the step fuses across their borders), but they say which part to work on. `--torch` adds the same
parts of the PyTorch oracle model (acar_jax/interop/torch_reference) on `--threads` threads for the backbone rows.

    python benchmarks/step_breakdown.py --layers [res2,res3,res4,res5,fast_res2,fast_res5,slow_stem,fast_stem]
                                        [--steps 3] [--threads N]

`--layers` instead times single R50 convolutions (LAYERS: forward + backward, min of `--steps` calls; the stems
without an input gradient, as in the train step): the library's folded `Conv3d` with XLA's kernel gradient
(`kernel_grad="xla"`), with one matmul per kernel tap (`"taps"`), the default (`"auto"`: the stems by kernel row),
the native 3-D convolution (`path="native"`),
then `torch.nn.Conv3d` in a child process
(PyTorch after an XLA compile can crash: benchmarks/train_step.py `torch_case`), back to back, with the load
average before and after. XLA_FLAGS (e.g. `--xla_cpu_use_onednn=true`) applies to the JAX rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from acar_jax.launch import host_memory  # noqa: E402

if __name__ == "__main__":
    host_memory.reexec_with_huge_pages(Path(__file__).name)   # as run.py does, so the tables time what users run

if "--torch_parts" in sys.argv:
    # torch and torchvision before jaxlib, as in benchmarks/train_step.py (the other order segfaults on import).
    import torch  # noqa: F401
    import torchvision  # noqa: F401

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from acar_jax.models.detector import create_model  # noqa: E402
from acar_jax.models.layers import KERNEL_GRADS, Conv3d, resolve_conv3d  # noqa: E402
from acar_jax.training import optim  # noqa: E402
from benchmarks.train_step import (  # noqa: E402
    Shape,
    compiled_flops,
    configure,
    jax_train,
    json_from_child,
    load_average,
    random_batch,
    timed,
)

# R50 ACAR convolutions for --layers: (name, in, out, kernel, stride, padding, dilation, input [B, T, H, W]):
# the slow pathway's stride-1 conv2 of res2..res5 (res5 dilation 2), the fast pathway's of res2 and res5, the stems.
LAYERS = (
    ("res2", 64, 64, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), (2, 8, 56, 56)),
    ("res3", 128, 128, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), (2, 8, 28, 28)),
    ("res4", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), (2, 8, 14, 14)),
    ("res5", 512, 512, (1, 3, 3), (1, 1, 1), (0, 2, 2), (1, 2, 2), (2, 8, 14, 14)),
    ("fast_res2", 8, 8, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), (2, 32, 56, 56)),
    ("fast_res5", 64, 64, (1, 3, 3), (1, 1, 1), (0, 2, 2), (1, 2, 2), (2, 32, 14, 14)),
    ("slow_stem", 3, 64, (1, 7, 7), (1, 2, 2), (0, 3, 3), (1, 1, 1), (2, 8, 224, 224)),
    ("fast_stem", 3, 8, (5, 7, 7), (1, 2, 2), (2, 3, 3), (1, 1, 1), (2, 32, 224, 224)),
)


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
    """PyTorch oracle backbone rows; run only in the `--torch_parts` child (see `run_torch_parts`)."""
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


def run_torch_parts(args) -> list[tuple[str, list[float]]]:
    """`torch_parts` in a child process: PyTorch loaded into a process where XLA:CPU has compiled the R50 step
    crashes with a segmentation fault (measured: jaxlib 0.10.2, torch 2.14; benchmarks/train_step.py
    `torch_case`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--torch_parts", "--config", args.config,
               "--batch", str(args.batch), "--frames", str(args.frames), "--height", str(args.height),
               "--width", str(args.width), "--boxes", str(args.boxes), "--steps", str(args.steps),
               "--threads", str(args.threads)]
    return [tuple(part) for part in json_from_child(command, "--torch")]


def layer_inputs(layer: tuple, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(input NTHWC, output cotangent NTHWC) of a LAYERS entry, float32."""
    _, cin, cout, kernel, stride, padding, dilation, (b, t, h, w) = layer
    rng = np.random.default_rng(seed)
    out = [(n + 2 * p - d * (k - 1) - 1) // s + 1
           for n, k, s, p, d in zip((t, h, w), kernel, stride, padding, dilation, strict=True)]
    return (rng.standard_normal((b, t, h, w, cin), dtype=np.float32),
            rng.standard_normal((b, *out, cout), dtype=np.float32))


def jax_layer_time(layer: tuple, kernel_grad: str, steps: int, path: str = "folded") -> float:
    """Min seconds of one jitted forward + backward of Conv3d (input gradient only past the stems)."""
    _, cin, cout, kernel, stride, padding, dilation, _ = layer
    conv = Conv3d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, path=path,
                  kernel_grad=kernel_grad, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(conv)
    x, cot = (jnp.asarray(a) for a in layer_inputs(layer))

    def loss(p, x, cot):
        return jnp.sum(nnx.merge(graphdef, p)(x) * cot)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1) if cin > 3 else 0))
    return min(timed(lambda: grad(params, x, cot), steps))


def torch_layer_times(layers: list[tuple], steps: int, threads: int) -> list[float]:
    """Min seconds of `torch.nn.Conv3d` forward + backward for each layer (same inputs as the JAX rows)."""
    import torch
    torch.set_num_threads(threads)
    times = []
    for layer in layers:
        _, cin, cout, kernel, stride, padding, dilation, _ = layer
        conv = torch.nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
        x, cot = (torch.from_numpy(a).permute(0, 4, 1, 2, 3).contiguous() for a in layer_inputs(layer))
        x.requires_grad_(cin > 3)

        def call(conv=conv, x=x, cot=cot):
            conv.zero_grad(set_to_none=True)
            x.grad = None
            (conv(x) * cot).sum().backward()

        times.append(min(timed(call, steps)))
    return times


def layers_table(names: list[str], steps: int, threads: int) -> None:
    """JAX (folded with XLA's / the per-tap kernel gradient, native 3-D) then PyTorch per layer; ratios to PyTorch."""
    load_before = load_average()
    layers = [layer for layer in LAYERS if layer[0] in names]
    rows = [(layer, *(jax_layer_time(layer, form, steps) for form in ("xla", "taps", "auto")),
             jax_layer_time(layer, "xla", steps, path="native")) for layer in layers]
    command = [sys.executable, str(Path(__file__).resolve()), "--torch_layers", ",".join(names), "--steps",
               str(steps), "--threads", str(threads)]
    theirs = json_from_child(command, "--layers")
    print(f"{jax.devices()[0].device_kind}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"{host_memory.describe()}, PyTorch "
          f"{theirs['version']} on {theirs['threads']} threads (own process); forward + backward, min of {steps} "
          f"calls, ms; load average {load_before} before, {load_average()} after")
    print(f"{'layer':<12}{'input':<22}{'JAX xla':>9}{'JAX taps':>10}{'JAX auto':>10}{'JAX 3-D':>9}{'PyTorch':>9}"
          f"{'xla/pt':>8}{'taps/pt':>8}{'auto/pt':>8}{'3-D/pt':>8}")
    for (layer, *jax_times), t_pt in zip(rows, theirs["times"], strict=True):
        name, cin, cout, kernel, *_, (b, t, h, w) = layer
        what = f"{b}x{t}x{h}x{w}x{cin}->{cout}"
        t_xla, t_taps, t_auto, t_native = (1e3 * t for t in jax_times)
        ratios = "".join(f"{t / (1e3 * t_pt):>8.2f}" for t in (t_xla, t_taps, t_auto, t_native))
        print(f"{name:<12}{what:<22}{t_xla:>9.0f}{t_taps:>10.0f}{t_auto:>10.0f}{t_native:>9.0f}{t_pt * 1e3:>9.0f}"
              + ratios)


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
    parser.add_argument("--kernel_grad", default=None, choices=KERNEL_GRADS,
                        help="override config.model.conv_kernel_grad (the step rows)")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch oracle's backbone")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads")
    parser.add_argument("--layers", nargs="?", const=",".join(layer[0] for layer in LAYERS), default=None,
                        help="time single R50 convolutions instead: comma-separated LAYERS names (default all)")
    parser.add_argument("--torch_layers", default=None, help=argparse.SUPPRESS)  # the child of --layers
    parser.add_argument("--torch_parts", action="store_true", help=argparse.SUPPRESS)  # the child of --torch
    args = parser.parse_args()
    if args.torch_parts:
        config = configure(args.config, None, None)
        shape = Shape(args.batch, args.frames, args.height, args.width, args.boxes)
        print(json.dumps(torch_parts(config, shape, args.steps, args.threads)), flush=True)
        return
    if args.torch_layers:
        import torch
        layers = [layer for layer in LAYERS if layer[0] in args.torch_layers.split(",")]
        print(json.dumps({"times": torch_layer_times(layers, args.steps, args.threads),
                          "version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
        return
    if args.layers:
        names = [name for name in args.layers.split(",") if name]
        unknown = sorted(set(names) - {layer[0] for layer in LAYERS})
        if unknown or not names:
            parser.error(f"--layers: unknown {unknown}; choose from {[layer[0] for layer in LAYERS]}")
        layers_table(names, args.steps, args.threads)
        return
    config = configure(args.config, None, args.conv3d, args.kernel_grad)
    shape = Shape(args.batch, args.frames, args.height, args.width, args.boxes)

    rows = [(f"matmul {args.matmul}^3 f32", *matmul_row(args.matmul, args.steps))]
    rows += parts(config, shape, args.steps)
    step_times, step_flops, _ = jax_train(config, shape, args.steps)
    rows.append(("train step", step_times, step_flops))
    step = min(step_times)
    print(f"{Path(args.config).name}, {jax.device_count()} x {jax.devices()[0].device_kind}, batch {shape}, "
          f"conv3d {resolve_conv3d(str(config.model.conv3d))}, kernel_grad {config.model.conv_kernel_grad}; "
          f"{host_memory.describe()}; {args.steps} timed calls; load average {load_average()}")
    print(f"{'part':<24}{'min (ms)':>10}{'med (ms)':>10}{'GFLOP':>9}{'GFLOP/s':>9}{'% step':>8}")
    for name, times, flops in rows:
        lo = min(times)
        share = f"{100 * lo / step:.0f}%" if not name.startswith("matmul") else ""
        print(f"{name:<24}{lo * 1e3:>10.0f}{statistics.median(times) * 1e3:>10.0f}{flops / 1e9:>9.1f}"
              f"{flops / lo / 1e9:>9.1f}{share:>8}")
    if args.torch:
        for name, times in run_torch_parts(args):
            print(f"{'torch ' + name:<24}{min(times) * 1e3:>10.0f}{statistics.median(times) * 1e3:>10.0f}")


if __name__ == "__main__":
    main()
