"""Input pipeline throughput (clips/s) of data_pipelines.clips from loose JPEG files and from packed ArrayRecord
shards (config.data.source = "frames" | "tfds"), the shards' bytes per keyframe and the projected size of AVA
train packed so; prints one table.

Two datasets:
  synthetic  the default job's dataset (configs/default.py: 8 frames at stride 2, frames 64x384, short side 64)
  jpeg256    AVA-like JPEG frames of 340x453 (the reference's extraction height 340), clips of 32 frames at
             stride 2 resized to short side 256 (256x341), as the paper's 8x8 models read them
Each runs TrainInput (decode, resize, flip, jitter, normalise, pad, batch) and eval_batches for one view, from
the frame files and from the shards (tools/prepare_tfds.py's packing), alternately, `--rounds` times; a row gives
the best round (the least disturbed by other jobs). The load average is printed: on a shared machine the absolute
rates mean little, the frames/tfds ratio of one run more.

  python benchmarks/input_pipeline.py [--work /tmp/acar_input_bench] [--batches 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import ml_collections
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.default import get_config  # noqa: E402
from data_pipelines import ava_files, clips, packed_clips, packed_prepare, synthetic  # noqa: E402
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


AVA_TRAIN_KEYFRAMES = 210_634   # AVA v2.2 train keyframes
AVA_TRAIN_VIDEOS = 235          # each 15 minutes from second 900: 27,001 frames at 30 fps
AVA_FRAMES_PER_VIDEO = 27_001


def _time(batches, n: int, clips_per_batch: int) -> float:
    """clips/s over n batches after one warm-up batch (tf.data start-up excluded)."""
    next(batches)
    start = time.perf_counter()
    for _ in range(n):
        next(batches)
    return n * clips_per_batch / (time.perf_counter() - start)


def _packed(data: ml_collections.ConfigDict, records, num_classes: int) -> tuple[ml_collections.ConfigDict, dict]:
    """Packs `records` (train and val alike) afresh into data.root/data.tfds_dir; the config reading them, the
    manifest entry (with the packing time)."""
    shutil.rmtree(packed_clips.shards_dir(data), ignore_errors=True)
    start = time.perf_counter()
    entry = packed_prepare.prepare_split(data, "train", num_classes=num_classes, records=records,
                                         keyframes_per_shard=64, log=lambda line: None)
    entry = dict(entry, seconds=time.perf_counter() - start)
    tfds_data = ml_collections.ConfigDict(data.to_dict())
    tfds_data.source = "tfds"
    return tfds_data, entry


def _rates(name, data, records, eval_records, bs, n_train, n_eval, scale, flip, num_classes, rounds, size):
    """Rows (dataset, mode, source, T, size, batch, clips/s) of train and eval from frames and from shards."""
    tfds_data, entry = _packed(data, records, num_classes)
    tfds_records = packed_clips.load_records(tfds_data, "train")
    by_key = {(r.video_id, r.timestamp): r for r in tfds_records}
    tfds_eval = [by_key[(r.video_id, r.timestamp)] for r in eval_records]
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for source, cfg, recs, ev in (("frames", data, records, eval_records), ("tfds", tfds_data, tfds_records,
                                                                                   tfds_eval)):
            train = clips.TrainInput(recs, cfg, global_batch_size=bs, seed=0, num_classes=num_classes)
            rate = _time(train.iterator(), n_train, bs)
            best[("train", source)] = max(best.get(("train", source), 0.0), rate)
            rate = _time(clips.eval_batches(ev, cfg, batch_size=bs, scale=scale, flip=flip), n_eval, bs)
            best[("eval", source)] = max(best.get(("eval", source), 0.0), rate)
    t = int(data.num_frames)
    rows = [(name, mode, source, t, size, bs, best[(mode, source)]) for mode in ("train", "eval")
            for source in ("frames", "tfds")]
    return rows, entry


def _jpeg_bytes(records, data) -> tuple[float, float]:
    """(mean size of the JPEG files a clip reads, mean size of every frame file of the videos), bytes."""
    sampled = [os.path.getsize(p) for r in records for p in frame_index_paths(r, data)]
    folders = {r.source.frames_dir for r in records}
    every = [os.path.getsize(os.path.join(f, n)) for f in folders for n in os.listdir(f) if n.endswith(".jpg")]
    return float(np.mean(sampled)), float(np.mean(every))


def frame_index_paths(record, data) -> list[str]:
    numbers = packed_prepare.clip_frame_numbers(record, data)
    return [os.path.join(record.source.frames_dir, f"image_{int(n):06d}.jpg") for n in numbers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/acar_input_bench", help="where the datasets are written")
    parser.add_argument("--batches", type=int, default=6, help="timed batches per jpeg256 train row")
    parser.add_argument("--rounds", type=int, default=2, help="frames / tfds alternations; best round kept")
    args = parser.parse_args()
    load_before = os.getloadavg()

    config = get_config()
    config.data.root = os.path.join(args.work, "synthetic")
    synthetic.ensure_synthetic_dataset(config.data.root, config.synthetic)
    data = config.data
    bs = config.train.batch_size
    size = f"{config.synthetic.height}x{config.synthetic.width} -> short {data.short_side}"
    train_records = ava_files.load_keyframe_records(data, "train")[:480]    # 60 steps of 8: enough to time
    rows, _ = _rates("synthetic", data, train_records, train_records[:80], bs, args.batches * 4, 8,
                     int(data.eval_scales[0]), False, config.model.num_classes, args.rounds, size)

    data = get_config().data
    data.root = os.path.join(args.work, "jpeg256")
    data.num_frames, data.short_side, data.box_buckets = 32, 256, (8,)
    records = _jpeg256_records(args.work)
    jpeg_rows, entry = _rates("jpeg256", data, records, records, 4, args.batches, 3, 256, True, 60, args.rounds,
                              "340x453 -> 256x341")
    rows += jpeg_rows
    load_after = os.getloadavg()

    print(f"\ninput pipeline on {os.cpu_count()} CPU cores (tf.data, parallel decode, deterministic); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (1 min)")
    print(f"| {'dataset':9} | {'mode':5} | {'source':6} | frames/clip | {'frames -> clip':18} | batch | clips/s "
          "| frames/s | tfds/frames |")
    print("|-----------|-------|--------|-------------|--------------------|-------|---------|----------|"
          "-------------|")
    rate_of = {(r[0], r[1], r[2]): r[6] for r in rows}
    for name, mode, source, t, size, b, rate in rows:
        ratio = f"{rate / rate_of[(name, mode, 'frames')]:11.2f}" if source == "tfds" else " " * 11
        print(f"| {name:9} | {mode:5} | {source:6} | {t:11d} | {size:18} | {b:5d} | {rate:7.1f} | {rate * t:8.0f} "
              f"| {ratio} |")

    per_keyframe = entry["num_bytes"] / entry["num_keyframes"]
    sampled_jpeg, every_jpeg = _jpeg_bytes(records, data)
    overhead = per_keyframe - 32 * sampled_jpeg
    projected = AVA_TRAIN_KEYFRAMES * (32 * sampled_jpeg + overhead)
    loose = AVA_TRAIN_VIDEOS * AVA_FRAMES_PER_VIDEO * every_jpeg
    print(f"\npacking jpeg256: {entry['num_keyframes']} keyframes in {entry['seconds']:.1f} s (under the load above)")
    print(f"packed jpeg256 (32 frames x stride 2, synthetic 340x453 JPEGs, PIL quality 90): "
          f"{per_keyframe / 1e3:.1f} kB per keyframe = 32 x {sampled_jpeg / 1e3:.1f} kB JPEG + "
          f"{overhead / 1e3:.2f} kB record overhead (boxes, labels, TFDS serialisation, ArrayRecord)")
    print(f"AVA v2.2 train packed so: {AVA_TRAIN_KEYFRAMES:,} keyframes x (32 x J + {overhead / 1e3:.2f} kB) "
          f"= {projected / 1e9:.0f} GB at J = {sampled_jpeg / 1e3:.1f} kB (these synthetic frames); the loose train "
          f"frames: {AVA_TRAIN_VIDEOS} videos x {AVA_FRAMES_PER_VIDEO:,} frames x J = {loose / 1e9:.0f} GB. Real "
          "AVA JPEG sizes (ffmpeg -qscale:v 1, 340 px high, widths by aspect ratio) differ: put your mean J in the "
          "formula (du of a frame folder / its file count).")


if __name__ == "__main__":
    main()
