"""Per-device memory of the compiled train step, from XLA's own buffer assignment (`memory_analysis()`), for
backbone depth x clip length x dtype x remat x per-device batch. Nothing runs: each step is compiled on abstract
shapes (`jax.jit(...).lower(...).compile()`), so the table is computed on any machine for the backend it runs on
(pass JAX_PLATFORMS=cuda / tpu there; XLA:CPU's buffer assignment is not the GPU's or TPU's).

    python benchmarks/memory.py [--depths 50,101,152] [--clips 8x8,16x8] [--dtypes float32,bfloat16]
                                [--remat off] [--batches 1,2] [--height 256] [--width 455] [--boxes 16]

Columns: args (params, optimiser state, batch), temp (activations and workspace XLA keeps live at the peak),
total = args + outputs - aliased (donated state) + temp, in GiB per device. Base config:
configs/ava_slowfast_r50_acar.py with backbone.layers set per depth; 16x8 = 64 frames at stride 2 (alpha 4).
Each row compiles one program (on an idle 2-core CPU about 20-40 s for R50, 40-80 s for R152), so the default
grid (24 rows, remat off) takes about 15-20 minutes there; add `--remat off,on` for the remat rows. With two or
more batches per setting, a second table fits total = fixed + per_clip * batch (XLA's per-device memory grows
linearly in the batch) and prints how many clips per device fit a 16, 40 and 80 GB device.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from acar_jax.core import parallel  # noqa: E402
from acar_jax.launch.config_files import load_config  # noqa: E402
from acar_jax.models.detector import create_model  # noqa: E402
from acar_jax.models.layers import resolve_conv3d  # noqa: E402
from acar_jax.state import train_state  # noqa: E402
from acar_jax.training import optim, train_step  # noqa: E402
from acar_jax.training.loop import config_roi_loss  # noqa: E402

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
CLIPS = {"8x8": 32, "16x8": 64}   # frames entering the model (4T) at stride 2
GIB = 1024 ** 3


def abstract_step(config, per_device_batch: int, height: int, width: int, boxes: int):
    """The compiled train step of `config` for abstract inputs (no parameter is materialised)."""
    mesh = parallel.make_mesh()
    tx = optim.gradient_transformation(config.train.optimizer)
    model = nnx.eval_shape(lambda: create_model(config))
    graphdef, params, batch_stats, rng_state = train_state.split_model(model)
    replicated = NamedSharding(mesh, P())
    put = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)
    state = train_state.TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated), params=put(params),
                                  batch_stats=put(batch_stats), opt_state=put(jax.eval_shape(tx.init, params)))
    b, n, k, t = per_device_batch * jax.device_count(), boxes, int(config.model.num_classes), \
        int(config.data.num_frames)
    split = NamedSharding(mesh, P(parallel.AXIS))
    batch = {"clips": jax.ShapeDtypeStruct((b, t, height, width, 3), jnp.float32, sharding=split),
             "boxes": jax.ShapeDtypeStruct((b, n, 4), jnp.float32, sharding=split),
             "box_mask": jax.ShapeDtypeStruct((b, n), jnp.bool_, sharding=split),
             "valid_hw": jax.ShapeDtypeStruct((b, 2), jnp.int32, sharding=split),
             "labels": jax.ShapeDtypeStruct((b, n, k), jnp.float32, sharding=split)}
    step = train_step.make_train_step(graphdef, tx, mesh, roi_loss_fn=config_roi_loss(config),
                                      grad_accum_steps=int(config.train.grad_accum_steps))
    lr = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated)
    return step.lower(state, put(rng_state), batch, lr).compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "ava_slowfast_r50_acar.py"))
    parser.add_argument("--depths", default="50,101,152")
    parser.add_argument("--clips", default="8x8,16x8")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--remat", default="off")
    parser.add_argument("--batches", default="1,2", help="clips per device")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=455)
    parser.add_argument("--boxes", type=int, default=16, help="N_max boxes per clip")
    parser.add_argument("--conv3d", default=None, choices=("auto", "native", "folded"))
    args = parser.parse_args()
    try:
        depths = [int(d) for d in args.depths.split(",")]
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError as err:
        parser.error(f"--depths / --batches: {err}")
    clips, dtypes = args.clips.split(","), args.dtypes.split(",")
    remats = args.remat.split(",")
    bad = ([d for d in depths if d not in DEPTHS] + [c for c in clips if c not in CLIPS]
           + [r for r in remats if r not in ("off", "on")] + [b for b in batches if b < 1])
    if bad:
        parser.error(f"unknown grid values {bad}: depths {sorted(DEPTHS)}, clips {sorted(CLIPS)}, remat off|on")

    base = load_config(args.config)
    conv3d = resolve_conv3d(args.conv3d or str(base.model.conv3d))
    print(f"per-device memory of the compiled train step: {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.default_backend()}), conv3d {conv3d}, clips {args.height}x{args.width}, {args.boxes} boxes")
    print(f"{'model':<7}{'clip':<6}{'dtype':<10}{'remat':<7}{'batch':>6}{'args GiB':>10}{'temp GiB':>10}"
          f"{'total GiB':>11}{'compile s':>11}", flush=True)
    totals: dict[tuple, dict[int, float]] = {}
    for depth in depths:
        for clip in clips:
            for dtype in dtypes:
                for remat in remats:
                    for batch in batches:
                        config = load_config(args.config)
                        config.model.backbone.layers = DEPTHS[depth]
                        config.data.num_frames = CLIPS[clip]
                        config.model.dtype = dtype
                        config.model.remat = remat == "on"
                        config.model.conv3d = conv3d
                        start = time.perf_counter()
                        mem = abstract_step(config, batch, args.height, args.width, args.boxes).memory_analysis()
                        seconds = time.perf_counter() - start
                        total = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                                 + mem.temp_size_in_bytes)
                        print(f"{'R' + str(depth):<7}{clip:<6}{dtype:<10}{remat:<7}{batch:>6}"
                              f"{mem.argument_size_in_bytes / GIB:>10.2f}{mem.temp_size_in_bytes / GIB:>10.2f}"
                              f"{total / GIB:>11.2f}{seconds:>11.0f}", flush=True)
                        totals.setdefault((depth, clip, dtype, remat), {})[batch] = total
    print_fits(totals)


DEVICE_GB = (16, 40, 80)


def linear_fit(by_batch: dict[int, float]) -> tuple[float, float]:
    """(fixed, per_clip) of the straight line through the smallest and largest measured batch."""
    lo, hi = min(by_batch), max(by_batch)
    per_clip = (by_batch[hi] - by_batch[lo]) / (hi - lo)
    return by_batch[lo] - per_clip * lo, per_clip


def clips_that_fit(by_batch: dict[int, float], device_bytes: float) -> int:
    """Largest per-device batch under `device_bytes` on `linear_fit`'s line (fixed + per_clip * batch)."""
    fixed, per_clip = linear_fit(by_batch)
    return max(0, int((device_bytes - fixed) // per_clip)) if per_clip > 0 else 0


def print_fits(totals: dict[tuple, dict[int, float]]) -> None:
    """Per setting with >= 2 batches: GiB per extra clip and the clips per device that fit DEVICE_GB."""
    rows = {key: by_batch for key, by_batch in totals.items() if len(by_batch) >= 2}
    if not rows:
        return
    print(f"\nlinear fit over the batches; clips per device that fit a {' / '.join(map(str, DEVICE_GB))} GB device "
          "(this backend's buffer assignment; leave headroom for the runtime)")
    print(f"{'model':<7}{'clip':<6}{'dtype':<10}{'remat':<7}{'GiB/clip':>9}{'fits':>14}")
    for (depth, clip, dtype, remat), by_batch in rows.items():
        per_clip = linear_fit(by_batch)[1] / GIB
        fits = " / ".join(str(clips_that_fit(by_batch, gb * 1e9)) for gb in DEVICE_GB)
        print(f"{'R' + str(depth):<7}{clip:<6}{dtype:<10}{remat:<7}{per_clip:>9.2f}{fits:>14}")


if __name__ == "__main__":
    main()
