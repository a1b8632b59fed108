"""Times the train step (and the inference forward) of a config on the available devices, with FLOPs and MFU;
`--compare_torch` adds the PyTorch model of the project's parity oracles on the same shapes, in the same run.

    python benchmarks/train_step.py [--config configs/default.py] [--batch 8] [--height H] [--width W]
                                    [--boxes 8] [--steps 10] [--dtype float32] [--conv3d auto]
                                    [--kernel_grad xla|taps|auto] [--peak_tflops X]
    python benchmarks/train_step.py --compare_torch [--steps 3] [--threads N]

Inputs are random clips with every box real, so no step is skipped. Compilation and one warm-up call are
excluded; each row gives the min and median of `--steps` calls, each waited for. FLOPs are the compiled
program's own count (`cost_analysis`, per device); MFU = FLOPs / step time / peak, with the peak from
`--peak_tflops` or, when omitted, the dense bf16 peak of known accelerators (DEFAULT_PEAK_TFLOPS; pass the f32
peak yourself for an f32 run). On CPU no peak is assumed.

--compare_torch runs the `--cases`, JAX then PyTorch back to back for each (PyTorch in a child process of its
own: see `torch_case`), so their ratio holds better on a loaded machine than two separate runs: r50 = R50 ACAR
(configs/ava_slowfast_r50_acar.py; train batch 2 x [32, 224, 224], 4 boxes; inference 1 x [32, 256, 455],
5 boxes) and tiny = the default job's model (configs/default.py; batch 8 x [8, 64, 384],
8 boxes). The PyTorch side is acar_jax/interop/torch_reference/slowfast.py + heads.py (the reference's modules) with
SGD (nesterov momentum, weight decay) and the same pose-softmax + sigmoid loss, on `--threads` intra-op threads
(default: every CPU, as XLA:CPU uses). The table's first line gives the load average at its end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from acar_jax.launch import host_memory  # noqa: E402

if __name__ == "__main__":
    host_memory.reexec_with_huge_pages(Path(__file__).name)   # as run.py does, so the tables time what users run

if "--torch_case" in sys.argv:
    # The PyTorch child: torch and torchvision load before jaxlib and tensorflow, as in tests/conftest.py. The
    # other order segfaults while torchvision loads triton (measured: jaxlib 0.10.2, torch 2.14.1, on import).
    import torch  # noqa: F401
    import torchvision  # noqa: F401

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from acar_jax.core import parallel  # noqa: E402
from acar_jax.core.batch import TRAIN_KEYS  # noqa: E402
from acar_jax.launch.config_files import load_config  # noqa: E402
from acar_jax.models.detector import jit_logits  # noqa: E402
from acar_jax.models.layers import KERNEL_GRADS, resolve_conv3d  # noqa: E402
from acar_jax.training import train_step  # noqa: E402
from acar_jax.training.loop import config_roi_loss, setup_model_state  # noqa: E402

# Dense bf16 peak TFLOP/s per device by jax device_kind prefix (vendor data sheets).
DEFAULT_PEAK_TFLOPS = {"TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0,
                       "TPU v5": 459.0, "TPU v6 lite": 918.0, "TPU v6e": 918.0, "NVIDIA A100": 312.0,
                       "NVIDIA H100": 989.0, "NVIDIA H200": 989.0, "NVIDIA L4": 121.0, "NVIDIA A10": 125.0,
                       "NVIDIA V100": 125.0}


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    frames: int
    height: int
    width: int
    boxes: int

    def __str__(self) -> str:
        return f"{self.batch} x [{self.frames}, {self.height}, {self.width}, 3], {self.boxes} boxes"


def random_batch(shape: Shape, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    b, n = shape.batch, shape.boxes
    xy = rng.uniform(0, 0.5, (b, n, 2))
    return {"clips": rng.standard_normal((b, shape.frames, shape.height, shape.width, 3), dtype=np.float32),
            "boxes": np.concatenate([xy, xy + 0.4], -1).astype(np.float32), "box_mask": np.ones((b, n), bool),
            "valid_hw": np.tile(np.array([[shape.height, shape.width]], np.int32), (b, 1)),
            "labels": (rng.uniform(size=(b, n, num_classes)) < 0.2).astype(np.float32)}


def timed(call: Callable[[], object], steps: int) -> list[float]:
    """Seconds of each of `steps` calls after one warm-up call (each waited for)."""
    jax.block_until_ready(call())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return times


def compiled_flops(compiled) -> float:
    """FLOPs of a compiled program by XLA's cost analysis (per device), or nan when the backend gives none."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def jax_train(config, shape: Shape, steps: int) -> tuple[list[float], float, float]:
    """(step times, FLOPs per step per device, compile + first step seconds) of the sharded train step."""
    model = setup_model_state(config)
    step = train_step.make_train_step(model.graphdef, model.tx, model.mesh, roi_loss_fn=config_roi_loss(config),
                                      grad_accum_steps=int(config.train.grad_accum_steps))
    batch = parallel.shard_batch(random_batch(shape, int(config.model.num_classes)), model.mesh, TRAIN_KEYS)
    lr = np.float32(0.01)
    start = time.perf_counter()
    compiled = step.lower(model.state, model.rng_state, batch, lr).compile()
    flops = compiled_flops(compiled)
    holder = {"state": model.state}

    def call():
        holder["state"], metrics = compiled(holder["state"], model.rng_state, batch, lr)
        return metrics
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    return timed(call, steps), flops, first


def jax_infer(config, shape: Shape, steps: int) -> tuple[list[float], float]:
    """(forward times, FLOPs per call) of the inference forward (the evaluator's jit_logits)."""
    model = setup_model_state(config)
    forward = jit_logits(model.graphdef)
    b = random_batch(shape, int(config.model.num_classes))
    args = (model.state.params, model.state.batch_stats, model.rng_state,
            *(jnp.asarray(b[k]) for k in ("clips", "boxes", "box_mask", "valid_hw")))
    compiled = forward.lower(*args).compile()
    return timed(lambda: compiled(*args), steps), compiled_flops(compiled)


def torch_model(config):
    """The reference's SlowFast + head (the parity oracles) for `config.model`, random weights, BN frozen."""
    import torch

    from acar_jax.interop.torch_reference import heads as torch_heads
    from acar_jax.interop.torch_reference import slowfast as torch_slowfast
    backbone = torch_slowfast.randomize_(torch_slowfast.from_backbone_config(config.model.backbone))
    width = backbone.slow_inplanes + backbone.fast_inplanes
    head = torch_heads.randomize_(torch_heads.from_model_config(config.model, width))
    return torch.nn.ModuleDict({"backbone": backbone, "head": head})


def torch_forward(model, batch: dict[str, np.ndarray]):
    import torch

    from acar_jax.interop.torch_reference import heads as torch_heads
    clips = torch.from_numpy(batch["clips"]).permute(0, 4, 1, 2, 3)
    slow, fast = model["backbone"](clips)
    return torch_heads.run_oracle(model["head"], slow, fast, batch["boxes"], batch["box_mask"], batch["valid_hw"],
                                  tuple(batch["clips"].shape[2:4]))


def torch_loss(logits, labels, num_pose: int):
    """The reference's loss: softmax cross-entropy over the pose classes + sigmoid BCE over the rest."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    flat, target = logits.reshape(-1, logits.shape[-1]), torch.from_numpy(labels).reshape(-1, labels.shape[-1])
    pose = F.cross_entropy(flat[:, :num_pose], target[:, :num_pose].argmax(1))
    rest = F.binary_cross_entropy_with_logits(flat[:, num_pose:], target[:, num_pose:])
    return pose + rest


def torch_train(config, shape: Shape, steps: int) -> list[float]:
    import torch
    model = torch_model(config)
    model.train()
    for m in model.modules():   # frozen BN, as the reference (and our FrozenBatchNorm)
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eval()
    opt = config.train.optimizer
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=float(opt.momentum), nesterov=bool(opt.nesterov),
                          weight_decay=float(opt.weight_decay))
    batch = random_batch(shape, int(config.model.num_classes))

    def call():
        sgd.zero_grad(set_to_none=True)
        loss = torch_loss(torch_forward(model, batch), batch["labels"], int(config.train.num_pose_classes))
        loss.backward()
        sgd.step()
        return None
    return timed(call, steps)


def torch_infer(config, shape: Shape, steps: int) -> list[float]:
    import torch
    model = torch_model(config).eval()
    batch = random_batch(shape, int(config.model.num_classes))

    def call():
        with torch.no_grad():
            torch_forward(model, batch)
    return timed(call, steps)


def peak_tflops(arg: float | None) -> float | None:
    if arg is not None:
        return arg
    kind = jax.devices()[0].device_kind
    return next((v for k, v in DEFAULT_PEAK_TFLOPS.items() if kind.startswith(k)), None)


def row(name: str, what: str, times: list[float], flops: float, peak: float | None) -> str:
    lo, med = min(times), statistics.median(times)
    tflops = flops / lo / 1e12 if np.isfinite(flops) else float("nan")
    mfu = f"{100 * tflops / peak:.1f}%" if peak and np.isfinite(tflops) else "-"
    gflop = f"{flops / 1e9:.0f}" if np.isfinite(flops) else "-"
    return f"{name:<18}{what:<16}{lo * 1e3:>10.0f}{med * 1e3:>10.0f}{gflop:>10}{tflops:>9.2f}{mfu:>7}"


COMPARE_CASES = (  # (name, config, train shape, inference shape)
    ("r50", ROOT / "configs" / "ava_slowfast_r50_acar.py", Shape(2, 32, 224, 224, 4), Shape(1, 32, 256, 455, 5)),
    ("tiny", ROOT / "configs" / "default.py", Shape(8, 8, 64, 384, 8), Shape(8, 8, 64, 384, 8)))

HEADER = f"{'':<18}{'':<16}{'min (ms)':>10}{'med (ms)':>10}{'GFLOP':>10}{'TFLOP/s':>9}{'MFU':>7}"


def configure(path: str, dtype: str | None, conv3d: str | None, kernel_grad: str | None = None):
    """The config at `path` with the benchmark's model overrides (None keeps the config's value)."""
    config = load_config(path)
    if dtype:
        config.model.dtype = dtype
    if conv3d:
        config.model.conv3d = conv3d
    if kernel_grad:
        config.model.conv_kernel_grad = kernel_grad
    return config


def torch_case(args) -> None:
    """The PyTorch side of one `--compare_torch` case, run in its own process: prints one JSON line of times.

    Why a process of its own: loading torchvision (-> torch._dynamo -> triton's libtriton, which carries its own
    LLVM) into a process where XLA:CPU has already compiled a large program crashes it with a segmentation fault
    (measured: the R50 and the tiny train step, jaxlib 0.10.2 / torch 2.14); and two frameworks' thread pools in
    one process compete for the same cores while the other one runs.
    """
    import torch

    from acar_jax.interop.torch_reference import heads as torch_heads  # noqa: F401 (torchvision, before anything else runs)
    torch.set_num_threads(args.threads)
    name, path, train_shape, infer_shape = next(case for case in COMPARE_CASES if case[0] == args.torch_case)
    config = configure(str(path), args.dtype, args.conv3d, args.kernel_grad)
    result = {"train": torch_train(config, train_shape, args.steps),
              "infer": torch_infer(config, infer_shape, args.steps),
              "version": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps(result), flush=True)


def json_from_child(command: list[str], what: str):
    """Runs a benchmark's PyTorch child process; the JSON of its last stdout line, or a RuntimeError naming
    `what` with the child's stderr tail."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"PyTorch side of {what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_torch_case(name: str, args) -> dict:
    """`torch_case` in a child process (same interpreter, steps, threads and dtype); its parsed JSON line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--torch_case", name, "--steps", str(args.steps),
               "--threads", str(args.threads)] + (["--dtype", args.dtype] if args.dtype else [])
    return json_from_child(command, f"case {name!r}")


def compare_torch(args) -> None:
    cases = [case for case in COMPARE_CASES if case[0] in args.cases]
    peak = peak_tflops(args.peak_tflops)
    lines, ratios, torch_info = [], [], ""
    for name, path, train_shape, infer_shape in cases:
        config = configure(str(path), args.dtype, args.conv3d, args.kernel_grad)
        jt, flops_t, _ = jax_train(config, train_shape, args.steps)
        ji, flops_i = jax_infer(config, infer_shape, args.steps)
        theirs = run_torch_case(name, args)
        tt, ti = theirs["train"], theirs["infer"]
        torch_info = f"PyTorch {theirs['version']} on {theirs['threads']} threads"
        lines += [row(name, "train JAX", jt, flops_t, peak), row(name, "train PyTorch", tt, flops_t, peak),
                  row(name, "infer JAX", ji, flops_i, peak), row(name, "infer PyTorch", ti, flops_i, peak)]
        ratios.append(f"{name}: JAX / PyTorch min: train {min(jt) / min(tt):.2f}, inference "
                      f"{min(ji) / min(ti):.2f}  (train {train_shape}; inference {infer_shape})")
        if args.verbose:
            print("\n".join(lines[-4:]), flush=True)
    print(f"{jax.device_count()} x {jax.devices()[0].device_kind} (conv3d "
          f"{resolve_conv3d(args.conv3d or 'auto')}, kernel_grad {config.model.conv_kernel_grad}, dtype "
          f"{args.dtype or 'float32'}, XLA:CPU on "
          f"{os.cpu_count()} threads), {torch_info} (own process); {args.steps} timed calls each; FLOPs of the "
          f"JAX program (both sides); {host_memory.describe()} (both sides); load average {load_average()}")
    print(HEADER)
    print("\n".join(lines))
    print("\n".join(ratios))


def load_average() -> str:
    """The 1-minute load average (Linux), or '-': timings on a shared machine mean little without it."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.py"))
    parser.add_argument("--batch", type=int, default=8, help="global clips per step")
    parser.add_argument("--height", type=int, default=None, help="clip height (default: config.synthetic.height)")
    parser.add_argument("--width", type=int, default=None, help="clip width (default: config.synthetic.width)")
    parser.add_argument("--boxes", type=int, default=8, help="N_max boxes per clip (all real)")
    parser.add_argument("--steps", type=int, default=None, help="timed calls (default 10; 3 with --compare_torch)")
    parser.add_argument("--dtype", default=None, help="override config.model.dtype (float32 | bfloat16)")
    parser.add_argument("--conv3d", default=None, choices=("auto", "native", "folded"),
                        help="override config.model.conv3d")
    parser.add_argument("--kernel_grad", default=None, choices=KERNEL_GRADS,
                        help="override config.model.conv_kernel_grad")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="per-device peak for MFU (default: dense bf16 peak of known GPUs/TPUs, none on CPU)")
    parser.add_argument("--inference", action="store_true", help="also time the inference forward")
    parser.add_argument("--compare_torch", action="store_true", help="JAX vs PyTorch table (R50 ACAR and tiny)")
    parser.add_argument("--cases", default="r50,tiny", help="--compare_torch cases, comma-separated: r50, tiny")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads")
    parser.add_argument("--verbose", action="store_true", help="print each case's rows as it finishes")
    parser.add_argument("--torch_case", default=None, help=argparse.SUPPRESS)  # the child of --compare_torch
    args = parser.parse_args()
    args.steps = args.steps or (3 if args.compare_torch else 10)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.cases) - {case[0] for case in COMPARE_CASES})
    if unknown or not args.cases:
        parser.error(f"--cases: unknown {unknown}; choose from r50, tiny")
    if args.torch_case:
        torch_case(args)
        return
    if args.compare_torch:
        compare_torch(args)
        return

    config = configure(args.config, args.dtype, args.conv3d, args.kernel_grad)
    shape = Shape(args.batch, int(config.data.num_frames), args.height or int(config.synthetic.height),
                  args.width or int(config.synthetic.width), args.boxes)
    parallel.check_batch_size(shape.batch, jax.device_count(), int(config.train.grad_accum_steps))
    times, flops, first = jax_train(config, shape, args.steps)
    peak = peak_tflops(args.peak_tflops)
    print(f"{Path(args.config).name}, {jax.device_count()} x {jax.devices()[0].device_kind}, batch {shape}, "
          f"dtype {config.model.dtype}, {host_memory.describe()}, conv3d "
          f"{resolve_conv3d(str(config.model.conv3d))}, kernel_grad "
          f"{config.model.conv_kernel_grad}; compile + first step "
          f"{first:.1f} s; steps/s {1 / statistics.median(times):.2f}, clips/s "
          f"{shape.batch / statistics.median(times):.1f}")
    print(HEADER)
    print(row(Path(args.config).stem, "train", times, flops, peak))
    if args.inference:
        infer, flops_i = jax_infer(config, shape, args.steps)
        print(row(Path(args.config).stem, "inference", infer, flops_i, peak))


if __name__ == "__main__":
    main()
