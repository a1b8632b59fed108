"""Counts and times the programs evaluation compiles for AVA's frame sizes (docs/ava_frame_sizes.md).

    python benchmarks/eval_compile.py [--config configs/ava_slowfast_r50_acar.py] [--scales 256 288 320]
                                      [--sizes 340x453 340x604 ...] [--frames_dir data/ava/frames]
                                      [--batch 8] [--boxes 8] [--max_compiles N]

Evaluation pads nothing by default (`data.eval_pad_spatial` False): each exact resized size of each test scale is
its own program (a flip view reuses its scale's programs; each box bucket a keyframe uses adds one program per
size). The sizes are the frame sizes (height x width) after extraction: `--frames_dir` reads them from your
frames (one JPEG header per video), else `--sizes`, else the assumed AVA list of docs/ava_frame_sizes.md.
For every (scale, resized size) the table shows the padded alternative's bucket (`eval_pad_spatial=True`, the
training buckets) and the time to lower + compile the eval forward of `--config` for a batch of `--batch` clips
with `--boxes` box slots (nothing is run). `--max_compiles` times only the first N programs (the count is
exact anyway). Compile times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from acar_jax.launch.config_files import load_config  # noqa: E402
from acar_jax.models.detector import jit_logits  # noqa: E402
from acar_jax.training.loop import setup_model_state  # noqa: E402
from data_pipelines import clips, frame_index, transforms  # noqa: E402

# The assumed AVA frame sizes at height 340 (docs/ava_frame_sizes.md: where they come from, how sure we are).
AVA_FRAME_SIZES = ((340, 453), (340, 604), (340, 605), (340, 510), (340, 425), (340, 629), (340, 800), (340, 816))


def frame_sizes_from_dir(frames_dir: str) -> list[tuple[int, int]]:
    """(height, width) of every video folder's first frame under `frames_dir` (one size per video)."""
    sizes = []
    for video in sorted(os.listdir(frames_dir)):
        first = os.path.join(frames_dir, video, frame_index.FRAME_PATTERN.format(1))
        if os.path.isfile(first):
            sizes.append(clips._probe_size(os.path.join(frames_dir, video), "", 1))
    if not sizes:
        raise SystemExit(f"error: no {frame_index.FRAME_PATTERN.format(1)} under {frames_dir}/<video_id>/")
    return sizes


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "ava_slowfast_r50_acar.py"))
    parser.add_argument("--scales", type=int, nargs="+", default=[256, 288, 320], help="test short sides")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=None, help="frame sizes HxW")
    parser.add_argument("--frames_dir", default="", help="read the frame sizes from these video folders")
    parser.add_argument("--batch", type=int, default=None, help="clips per program (default eval_batch_size)")
    parser.add_argument("--boxes", type=int, default=None, help="box slots (default: smallest box bucket)")
    parser.add_argument("--max_compiles", type=int, default=-1, help="time at most this many programs")
    args = parser.parse_args()

    config = load_config(args.config)
    sizes = frame_sizes_from_dir(args.frames_dir) if args.frames_dir else (args.sizes or list(AVA_FRAME_SIZES))
    distinct_frames = sorted(set(sizes))
    batch = args.batch or int(config.eval_batch_size)
    boxes = args.boxes or min(int(b) for b in config.data.box_buckets)
    t, k = int(config.data.num_frames), int(config.model.num_classes)

    print(f"{Path(args.config).name}: {len(distinct_frames)} frame sizes, scales {args.scales}, batch {batch} x "
          f"[{t}, H, W, 3], {boxes} box slots, {k} classes, {jax.devices()[0].platform}")
    print("\n| scale | frames (HxW) | eval program (no padding) | padded bucket (eval_pad_spatial) | compile (s) |")
    print("|---|---|---|---|---|", flush=True)
    model = setup_model_state(config)
    forward = jit_logits(model.graphdef)
    state = model.state
    rows, timed, total_s = [], 0, 0.0
    for scale in args.scales:
        exact = clips.spatial_buckets(distinct_frames, config.data, scale, exact=True)
        padded = clips.spatial_buckets(distinct_frames, config.data, scale)
        for hw in exact:
            frames = [f"{h}x{w}" for h, w in distinct_frames if transforms.resized_hw(h, w, scale) == hw]
            bucket = clips.assign_spatial_bucket(hw, padded)
            compile_s = float("nan")
            if args.max_compiles < 0 or timed < args.max_compiles:
                shapes = (jax.ShapeDtypeStruct((batch, t, *hw, 3), jnp.float32),
                          jax.ShapeDtypeStruct((batch, boxes, 4), jnp.float32),
                          jax.ShapeDtypeStruct((batch, boxes), jnp.bool_),
                          jax.ShapeDtypeStruct((batch, 2), jnp.int32))
                start = time.perf_counter()
                forward.lower(state.params, state.batch_stats, model.rng_state, *shapes).compile()
                compile_s = time.perf_counter() - start
                timed += 1
                total_s += compile_s
            rows.append(hw)
            timing = "-" if compile_s != compile_s else f"{compile_s:.1f}"   # NaN: not timed (--max_compiles)
            print(f"| {scale} | {' '.join(frames)} | {hw[0]}x{hw[1]} | {bucket[0]}x{bucket[1]} | {timing} |",
                  flush=True)   # row by row: a long run shows what it has measured so far
    n_padded = sum(len(clips.spatial_buckets(distinct_frames, config.data, s)) for s in args.scales)
    print(f"\nprograms per box bucket: {len(rows)} without padding, {n_padded} with eval_pad_spatial=True; "
          f"{timed} compiled in {total_s:.1f} s ({total_s / max(timed, 1):.1f} s each)")


if __name__ == "__main__":
    main()
