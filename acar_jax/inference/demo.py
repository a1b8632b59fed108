"""The video demo: `python run.py --mode=demo --config=... --workdir=... --config.demo.video=in.mp4`.

  video -> frames exactly as tools/extract_frames.py prepares evaluation frames (the reference's ffmpeg command
           with the bundled binary: config.data.fps, height demo.frame_height, from second 0; a temp folder)
  -> keyframes every demo.stride_s seconds (timestamps are seconds of the video, frame t * fps + 1)
  -> person boxes per keyframe: the rows of demo.boxes_csv for this video (AVA proposal format, scores >=
     demo.box_threshold), else demo.detector on the keyframe (acar_jax/inference/person_detector.py)
  -> the evaluation path itself (evaluation.evaluator.score_records: the same clip window and edge looping,
     the config's test views, batches of config.eval_batch_size, one compiled shape per size, view fusion and
     the prediction function)
  -> output_dir/actions.csv in the AVA result format (the rows --mode=eval writes for the same frames and boxes)
  -> output_dir/annotated.mp4: the input video (same frames, size and fps) with each keyframe's boxes and their
     top-k actions (label-map names, scores >= demo.score_threshold), held until the next keyframe.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable

import av
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from PIL import Image, ImageDraw
from tqdm import tqdm

from acar_jax.evaluation.evaluator import BoxIndex, score_records, write_results
from acar_jax.inference import proposals
from acar_jax.inference.model import load_model
from acar_jax.inference.person_detector import PersonDetector, create_detector
from acar_jax.models.detector import create_model
from data_pipelines import ava_files, frame_extraction
from data_pipelines.frame_index import FrameReadError, ava_keyframe_number, probe_video

SUPPORTED_HEADS = ("linear", "acar")
PALETTE = ((255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 96, 255), (255, 255, 255))


class DemoError(ValueError):
    """Bad demo input; the message names the config field, the file and the row."""


@dataclasses.dataclass(frozen=True)
class DemoResult:
    actions_csv: str
    annotated: str
    keyframes: int
    boxes: int
    model_seconds: float       # scoring time (frames read, clips made, model run), compile included

    @property
    def keyframes_per_second(self) -> float:
        return self.keyframes / max(self.model_seconds, 1e-9)


def check_supported(config: ml_collections.ConfigDict) -> None:
    head = str(config.model.head.type)
    if head not in SUPPORTED_HEADS:
        raise DemoError(f"config.model.head.type {head!r}: the demo runs the heads {', '.join(SUPPORTED_HEADS)} "
                        "(a feature-bank head needs the video's bank built first, which the demo does not do)")


def video_id_of(path: str) -> str:
    """The boxes CSV names the video by its file name without the extension (as tools/extract_frames.py)."""
    return os.path.basename(path).rsplit(".", 1)[0]


def min_frames(data_config: ml_collections.ConfigDict) -> int:
    """One clip window: num_frames * frame_stride frames at config.data.fps."""
    return int(data_config.num_frames) * int(data_config.frame_stride)


def extract_demo_frames(video: str, frames_dir: str, data_config: ml_collections.ConfigDict,
                        height: int) -> int:
    """Decodes and resamples `video` into `frames_dir` as evaluation frames are made; returns the count.
    DemoError naming config.demo.video for a missing, corrupt or too short video."""
    if not os.path.isfile(video):
        raise DemoError(f"config.demo.video: no such file: {video!r}")
    try:
        probe_video(video)
        os.makedirs(frames_dir, exist_ok=True)
        n = frame_extraction.extract_frames(video, frames_dir, start_second=0, num_frames=0,
                                            fps=int(data_config.fps), height=height)
    except (FrameReadError, frame_extraction.FfmpegError) as e:
        raise DemoError(f"config.demo.video: {e}") from None
    need = min_frames(data_config)
    if n < need:
        fps = int(data_config.fps)
        raise DemoError(f"config.demo.video {video}: {n / fps:.2f} s ({n} frames at {fps} fps) is shorter than one "
                        f"clip window: at least {need} frames ({need / fps:.2f} s) are needed "
                        f"(config.data.num_frames {data_config.num_frames} x frame_stride "
                        f"{data_config.frame_stride})")
    return n


def keyframe_timestamps(num_frames: int, fps: int, stride_s: int) -> list[int]:
    """Seconds t = 0, stride_s, 2 stride_s, ... whose keyframe (frame t * fps + 1) exists."""
    if stride_s < 1:
        raise DemoError(f"config.demo.stride_s: expected a whole number of seconds >= 1, got {stride_s}")
    return [t for t in range(0, num_frames // fps + 1, stride_s) if ava_keyframe_number(t, 0, fps) <= num_frames]


def boxes_from_csv(path: str, video_id: str, timestamps: list[int], threshold: float,
                   label_map: ava_files.LabelMap) -> list[ava_files.AvaBox]:
    """This video's rows of an AVA proposal CSV at the demo's keyframes, score >= threshold. Bad rows raise
    AvaFormatError naming the file and lines; a CSV without rows for this video is a DemoError."""
    if not os.path.isfile(path):
        raise DemoError(f"config.demo.boxes_csv: no such file: {path!r}")
    boxes = ava_files.read_box_annotations(path, label_map, with_scores=True)
    mine = [b for b in boxes if b.video_id == video_id]
    if not mine:
        others = sorted({b.video_id for b in boxes})
        raise DemoError(f"config.demo.boxes_csv {path}: no rows for video {video_id!r} (the file name of "
                        f"config.demo.video without its extension); it lists {len(others)} other video(s), "
                        f"e.g. {others[:3]}")
    wanted = set(timestamps)
    kept = [b for b in mine if b.timestamp in wanted and b.score >= threshold]
    # a row past the end of the video is an error naming its line, as in evaluation
    last = max(timestamps)
    late = [b for b in mine if b.timestamp > last]
    if late:
        raise DemoError(f"{late[0].path}:{late[0].line}: timestamp {late[0].timestamp} of video {video_id!r} is "
                        f"after the video's last keyframe at second {last}")
    return kept


def configured_detector(demo: ml_collections.ConfigDict) -> PersonDetector:
    """config.demo.detector built; a bad detector field is a DemoError (missing files and packages stay
    FileNotFoundError / ImportError, which name the fix)."""
    try:
        return create_detector(demo)
    except (FileNotFoundError, ImportError):
        raise
    except ValueError as e:
        raise DemoError(str(e)) from None


def detected_boxes(detector: PersonDetector, frames_dir: str, video_id: str,
                   timestamps: list[int], fps: int) -> list[ava_files.AvaBox]:
    """Person boxes of config.demo.detector (acar_jax/inference/person_detector.py) on each keyframe."""
    return [box for t, found in proposals.detect_keyframes(detector, frames_dir, timestamps, start_second=0, fps=fps)
            for box in proposals.to_ava_boxes(video_id, t, found, f"{detector.name} person detector")]


def demo_data_config(config: ml_collections.ConfigDict, root: str) -> ml_collections.ConfigDict:
    """config.data with the demo's frame folder under `root` (frame 1 = second 0, no exclusions); the test
    views, clip window, resize and normalisation stay the config's."""
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.root, data.frames_dir, data.start_second, data.exclusions = root, "frames", 0, ""
    return data


def run_demo(config: ml_collections.ConfigDict, workdir: str, *,
             create: Callable[[ml_collections.ConfigDict], nnx.Module] = create_model) -> DemoResult:
    """Runs the demo of config.demo with the latest checkpoint of `workdir`; see the module docstring."""
    demo = config.demo
    check_supported(config)
    if not demo.video:
        raise DemoError("config.demo.video is empty: give the input video, e.g. --config.demo.video=in.mp4")
    label_map = ava_files.read_label_map(ava_files.resolve_path(config.data.root, config.data.label_map))
    video_id = video_id_of(demo.video)
    out_dir = demo.output_dir or os.path.join(workdir, "demo", video_id)
    fps = int(config.data.fps)
    with tempfile.TemporaryDirectory(prefix="acar_demo_") as tmp:
        frames_root = os.path.join(tmp, "frames")
        n = extract_demo_frames(demo.video, os.path.join(frames_root, video_id), config.data,
                                int(demo.frame_height))
        timestamps = keyframe_timestamps(n, fps, int(demo.stride_s))
        if demo.boxes_csv:
            boxes = boxes_from_csv(demo.boxes_csv, video_id, timestamps, float(demo.box_threshold), label_map)
        else:
            boxes = detected_boxes(configured_detector(demo), os.path.join(frames_root, video_id), video_id,
                                   timestamps, fps)
        if not boxes:
            raise DemoError(f"no person boxes at the {len(timestamps)} keyframes of {demo.video} (score >= "
                            f"{demo.box_threshold if demo.boxes_csv else demo.detector_threshold})")
        boxes = [dataclasses.replace(b, labels=np.zeros(label_map.num_classes, np.float32)) for b in boxes]
        records = ava_files.records_from_boxes(boxes, frames_root, 0, fps, label_map.num_classes)
        model = load_model(config, workdir, create=create)
        start = time.perf_counter()
        scores, seen = score_records(config, demo_data_config(config, tmp), records,
                                     _progress(model.logits, len(records), len(config.data.eval_scales) *
                                               (2 if config.data.eval_flip else 1)))
        seconds = time.perf_counter() - start
    index = BoxIndex(records)
    actions_csv = os.path.join(out_dir, "actions.csv")
    write_results(actions_csv, index, scores, seen, label_map.ids)
    annotated = os.path.join(out_dir, "annotated.mp4")
    write_annotated_video(demo.video, annotated, records, scores, label_map, top_k=int(demo.top_k),
                          score_threshold=float(demo.score_threshold))
    logging.info("demo: %d keyframes, %d boxes in %.1f s; wrote %s and %s", len(records), index.num_boxes,
                 seconds, actions_csv, annotated)
    return DemoResult(actions_csv, annotated, len(records), index.num_boxes, seconds)


def _progress(logits_fn, num_keyframes: int, num_views: int):
    """logits_fn with a progress bar over keyframes x test views (filler clips of a last batch not counted)."""
    bar = tqdm(total=num_keyframes * num_views, desc="demo", unit="keyframe")

    def wrapped(clips, boxes, box_mask, valid_hw):
        out = np.asarray(logits_fn(clips, boxes, box_mask, valid_hw))
        bar.update(min(clips.shape[0], bar.total - bar.n))
        if bar.n >= bar.total:
            bar.close()
        return out
    return wrapped


def _labels_of(scores: np.ndarray, label_map: ava_files.LabelMap, top_k: int, threshold: float) -> list[str]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [f"{label_map.names[c]} {scores[c]:.2f}" for c in order if scores[c] >= threshold]


def draw_keyframe(image: Image.Image, boxes: np.ndarray, texts: list[list[str]]) -> Image.Image:
    """Boxes (normalised x1y1x2y2) and their text lines drawn on a copy of `image`."""
    out = image.convert("RGBA")
    labels = Image.new("RGBA", out.size, (0, 0, 0, 0))      # text on a half-transparent layer: actors stay visible
    draw, text_draw = ImageDraw.Draw(out), ImageDraw.Draw(labels)
    w, h = out.size
    thick = max(2, round(min(w, h) / 120))
    for i, (box, lines) in enumerate(zip(boxes, texts, strict=True)):
        color = PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = (float(box[0]) * w, float(box[1]) * h, float(box[2]) * w, float(box[3]) * h)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=thick)
        ty = y1 + thick
        for line in lines:
            left, top, right, bottom = text_draw.textbbox((x1 + thick, ty), line)
            text_draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0, 110))
            text_draw.text((x1 + thick, ty), line, fill=(*color, 230))
            ty = bottom + 2
    return Image.alpha_composite(out, labels).convert("RGB")


def write_annotated_video(video: str, output: str, records, scores: np.ndarray, label_map: ava_files.LabelMap,
                          *, top_k: int, score_threshold: float) -> None:
    """Re-encodes `video` frame by frame (same count, size, frame rate) with the latest keyframe's boxes and
    labels drawn from its time until the next keyframe's."""
    index = BoxIndex(records)
    times = [int(r.timestamp) for r in records]
    overlays = []
    for r, rec in enumerate(records):
        s = scores[index.offsets[r]:index.offsets[r + 1]]
        overlays.append((rec.boxes, [_labels_of(row, label_map, top_k, score_threshold) for row in s]))
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    with av.open(video) as src, av.open(output, "w") as dst:
        in_stream = src.streams.video[0]
        in_stream.thread_type = "AUTO"
        rate = in_stream.average_rate or in_stream.guessed_rate
        out_stream = dst.add_stream("libx264", rate=rate)
        out_stream.width, out_stream.height = in_stream.codec_context.width, in_stream.codec_context.height
        out_stream.pix_fmt = "yuv420p"
        out_stream.options = {"crf": "18", "preset": "veryfast"}
        total = in_stream.frames or None
        first_time = None
        for i, frame in enumerate(tqdm(src.decode(in_stream), total=total, desc="annotate", unit="frame")):
            t = frame.time if frame.time is not None else i / float(rate)
            first_time = t if first_time is None else first_time
            k = int(np.searchsorted(times, t - first_time + 1e-6, side="right")) - 1
            image = frame.to_image()
            if k >= 0:
                image = draw_keyframe(image, *overlays[k])
            out_frame = av.VideoFrame.from_image(image)
            out_frame.pts = i
            out_frame.time_base = 1 / rate
            for packet in out_stream.encode(out_frame):
                dst.mux(packet)
        for packet in out_stream.encode():
            dst.mux(packet)
