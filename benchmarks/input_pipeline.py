"""Input pipeline throughput (clips/s) of data_pipelines.clips on this machine; prints a table.

Two datasets:
  synthetic  the default job's dataset (configs/default.py: 8 frames, frames 64x384, short side 64)
  jpeg256    AVA-like JPEG frames of 340x453 (the reference's extraction height 340), clips of 32 frames at
             stride 2 resized to short side 256 (256x341), as the paper's 8x8 models read them
Both run TrainInput (decode, resize, flip, jitter, normalise, pad, batch) and eval_batches for one view.

  python benchmarks/input_pipeline.py [--work /tmp/acar_input_bench] [--batches 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.default import get_config  # noqa: E402
from data_pipelines import ava_files, clips, synthetic  # noqa: E402
from data_pipelines.records import FrameSource, KeyframeRecord  # noqa: E402


def _jpeg256_records(work: str, num_videos: int = 4, keyframes_per_video: int = 4) -> list[KeyframeRecord]:
    """Writes 340x453 JPEG videos with photo-like content (smooth shading, shapes, sensor noise) once."""
    rng = np.random.default_rng(0)
    span = 64                                 # 32 frames at stride 2
    n_frames = span + 30 * keyframes_per_video
    records = []
    for v in range(num_videos):
        folder = os.path.join(work, "jpeg256", f"video_{v}")
        if not os.path.isdir(folder):
            os.makedirs(folder + ".tmp", exist_ok=True)
            yy, xx = np.mgrid[0:340, 0:453]
            base = np.stack([110 + 60 * np.sin(xx / 70 + c) * np.cos(yy / 50) for c in range(3)], -1)
            for f in range(1, n_frames + 1):
                frame = base + rng.normal(0, 6, base.shape)
                for s in range(4):            # moving "people"
                    y0, x0 = 60 + 50 * s, (40 + 3 * f + 90 * s) % 400
                    frame[y0:y0 + 120, x0:x0 + 45] = [40 + 50 * s, 90, 160 - 30 * s]
                Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(
                    os.path.join(folder + ".tmp", f"image_{f:06d}.jpg"), quality=90)
            os.rename(folder + ".tmp", folder)
        for j in range(keyframes_per_video):
            k = span // 2 + 1 + 30 * j
            boxes = np.array([[0.1 + 0.2 * s, 0.2, 0.2 + 0.2 * s, 0.6] for s in range(4)], np.float32)
            source = FrameSource(frames_dir=folder, keyframe_index=k, num_frames=n_frames)
            records.append(KeyframeRecord(f"video_{v}", 902 + j, boxes, np.zeros([4, 60], np.float32),
                                          np.ones([4], np.float32), np.arange(4, dtype=np.int32), source))
    return records


def _time(batches, n: int, clips_per_batch: int) -> float:
    """clips/s over n batches after one warm-up batch (tf.data start-up excluded)."""
    next(batches)
    start = time.perf_counter()
    for _ in range(n):
        next(batches)
    return n * clips_per_batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/acar_input_bench", help="where the datasets are written")
    parser.add_argument("--batches", type=int, default=6, help="timed batches per row")
    args = parser.parse_args()

    rows = []
    config = get_config()
    config.data.root = os.path.join(args.work, "synthetic")
    start = time.perf_counter()
    synthetic.ensure_synthetic_dataset(config.data.root, config.synthetic)
    print(f"synthetic dataset ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    data = config.data
    train_records = ava_files.load_keyframe_records(data, "train")
    val_records = ava_files.load_keyframe_records(data, "val")
    bs = config.train.batch_size
    train = clips.TrainInput(train_records, data, global_batch_size=bs, seed=0,
                             num_classes=config.model.num_classes)
    frames = f"{config.synthetic.height}x{config.synthetic.width}"
    size = f"{frames} -> short {data.short_side}"
    rows.append(("synthetic", "train", data.num_frames, size, bs, _time(train.iterator(), args.batches * 4, bs)))
    rows.append(("synthetic", "eval", data.num_frames, size, bs,
                 _time(clips.eval_batches(val_records, data, batch_size=bs, scale=int(data.eval_scales[0]),
                                          flip=False), 8, bs)))

    data = get_config().data
    data.num_frames, data.short_side, data.box_buckets = 32, 256, (8,)
    records = _jpeg256_records(args.work)
    bs = 4
    train = clips.TrainInput(records, data, global_batch_size=bs, seed=0, num_classes=60)
    rows.append(("jpeg256", "train", 32, "340x453 -> 256x341", bs, _time(train.iterator(), args.batches, bs)))
    rows.append(("jpeg256", "eval", 32, "340x453 -> 256x341", bs,
                 _time(clips.eval_batches(records, data, batch_size=bs, scale=256, flip=True), 3, bs)))

    print(f"\ninput pipeline on {os.cpu_count()} CPU cores (tf.data, parallel decode, deterministic)")
    print(f"| {'dataset':9} | {'mode':5} | frames/clip | {'frames -> clip':18} | batch | clips/s "
          "| frames/s |")
    print("|-----------|-------|-------------|--------------------|-------|---------|----------|")
    for name, mode, t, size, b, rate in rows:
        print(f"| {name:9} | {mode:5} | {t:11d} | {size:18} | {b:5d} | {rate:7.1f} | {rate * t:8.0f} |")


if __name__ == "__main__":
    main()
