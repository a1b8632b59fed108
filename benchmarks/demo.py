"""Demo throughput: keyframes per second of `run.py --mode=demo`'s scoring (frames read, clips made, model run,
one test view per config) on a generated video with random boxes and random weights (speed does not depend on
the weights).

    python benchmarks/demo.py [--models default,r50] [--seconds 6] [--boxes 3]

default: configs/default.py (tiny SlowFast + ACAR, short side 64, 8 frames; a 64x384 video like the synthetic
set's); r50: configs/ava_slowfast_r50_acar.py (SlowFast R50 + ACAR, short side 256, 32 frames; a 340x604 video,
AVA's 16:9 frames at height 340). The demo is run twice in one process: the first run's scoring includes the
model's compile (what a user's single run pays); the second loads the model again and reuses the compiled
functions (acar_jax.api shares them per model structure), so its keyframes/s is the steady state. Prints one
table: the first run's scoring seconds, the second run's keyframes/s (scoring) and its end-to-end keyframes/s
(with decoding, frame extraction and writing the annotated video). Progress bars are off (TQDM_DISABLE=1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")    # the table alone on the terminal

import av  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from acar_jax.inference import demo  # noqa: E402
from acar_jax.launch.config_files import load_config  # noqa: E402
from acar_jax.models.detector import create_model  # noqa: E402
from acar_jax.state import checkpoints, train_state  # noqa: E402
from acar_jax.training import optim  # noqa: E402
from data_pipelines import synthetic  # noqa: E402

MODELS = {"default": ("configs/default.py", (64, 384)), "r50": ("configs/ava_slowfast_r50_acar.py", (340, 604))}


def write_video(path: str, seconds: int, hw: tuple[int, int], fps: int = 30) -> None:
    """A moving colour gradient with a block of fixed noise: compresses like real video (a minute of pure noise
    would be gigabytes), while every frame differs."""
    h, w = hw
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, [h // 2, w // 4, 3], dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = hw
        stream.pix_fmt = "yuv420p"
        for i in range(seconds * fps):
            img = np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy + i) % 256], -1).astype(np.uint8)
            x = (5 * i) % (w - texture.shape[1])
            img[h // 4: h // 4 + texture.shape[0], x: x + texture.shape[1]] = texture
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_boxes(path: str, video_id: str, seconds: int, boxes: int) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for t in range(seconds):
        for _ in range(boxes):
            x, y = rng.uniform(0, 0.5, 2)
            rows.append(f"{video_id},{t},{x:.3f},{y:.3f},{x + 0.4:.3f},{y + 0.45:.3f},,0.99")
    Path(path).write_text("\n".join(rows) + "\n")


def bench(name: str, seconds: int, boxes: int, batch_size: int, tmp: str) -> dict:
    path, hw = MODELS[name]
    config = load_config(str(ROOT / path))
    if config.data.dataset == "synthetic":
        Path(tmp, "labels.pbtxt").write_text(synthetic.label_map_text())
        config.data.label_map = os.path.join(tmp, "labels.pbtxt")
    else:
        config.data.label_map = str(ROOT / "acar_jax" / "data" / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    workdir = os.path.join(tmp, name)
    _, _, state = train_state.create_train_state(create_model(config), optim.gradient_transformation(
        config.train.optimizer))
    ckpt = checkpoints.Checkpointer(workdir, every_steps=1, max_to_keep=1)
    ckpt.save(state, force=True)
    ckpt.close()
    video = os.path.join(tmp, f"{name}.mp4")
    write_video(video, seconds, hw)
    write_boxes(os.path.join(tmp, f"{name}.csv"), name, seconds, boxes)
    config.demo.video, config.demo.boxes_csv = video, os.path.join(tmp, f"{name}.csv")
    config.demo.output_dir = os.path.join(tmp, f"{name}_out")
    config.eval_batch_size = batch_size
    # twice: the first run includes the compile, the second is the steady state
    first = demo.run_demo(config, workdir)
    start = time.perf_counter()
    second = demo.run_demo(config, workdir)
    total = time.perf_counter() - start
    return {"model": name, "clip": f"{config.data.num_frames}x{config.data.eval_scales[0]}", "keyframes":
            second.keyframes, "first_s": first.model_seconds, "kf_per_s": second.keyframes_per_second,
            "end_to_end_kf_per_s": second.keyframes / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="default,r50")
    parser.add_argument("--seconds", type=int, default=6, help="video length = keyframes")
    parser.add_argument("--boxes", type=int, default=3, help="boxes per keyframe")
    parser.add_argument("--batch_size", type=int, default=4, help="config.eval_batch_size (clips per call)")
    args = parser.parse_args()
    print(f"{jax.device_count()} x {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores", flush=True)
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown or args.seconds < 3 or args.boxes < 1 or args.batch_size < 1:
        parser.error(f"--models: a subset of {','.join(MODELS)} (got {unknown or names}); --seconds >= 3 (one "
                     "clip window of the r50 configs is 2.1 s); --boxes, --batch_size >= 1")
    print(f"{args.seconds}-second video, {args.boxes} boxes per keyframe, batches of {args.batch_size} clips; "
          "1st run: scoring seconds with the compile; 2nd run: compiled model reused", flush=True)
    print(f"{'model':8} {'clip':8} {'keyframes':>9} {'1st run s':>9} {'keyframes/s':>11} "
          f"{'incl. decode+video':>18}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = bench(name, args.seconds, args.boxes, args.batch_size, tmp)
            print(f"{r['model']:8} {r['clip']:8} {r['keyframes']:9d} {r['first_s']:9.1f} "
                  f"{r['kf_per_s']:11.2f} {r['end_to_end_kf_per_s']:18.2f}", flush=True)


if __name__ == "__main__":
    main()
