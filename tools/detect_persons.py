"""Runs the configured person detector (config.demo.detector: hog, torchvision or onnx) over the keyframes of
videos or frame folders and writes their boxes as an AVA proposal CSV (`video_id,timestamp,x1,y1,x2,y2,,score`),
which `--mode=demo` (config.demo.boxes_csv) and evaluation (config.data.val_proposals) read.

  python tools/detect_persons.py --config=configs/default.py --input=my_video.mp4 --output=boxes.csv \
      --config.demo.detector=torchvision [--config.demo.detector_threshold=0.5]
  python tools/detect_persons.py --config=configs/ava_slowfast_r50_acar.py --input=data/ava/frames/<video_id> ...

Keyframes are the demo's: one every config.demo.stride_s seconds at config.data.fps. A video is decoded as the
demo decodes it (the reference's ffmpeg command, height config.demo.frame_height, second 0 = frame 1; the
video_id is its file name without the extension); a frame folder of image_%06d.jpg is read as evaluation reads
it (frame 1 = second config.data.start_second; the video_id is the folder's name). Every detector box is written
(scores >= config.demo.detector_threshold), so keep the threshold low and let box_threshold /
val_proposal_threshold choose later. Resumable: keyframes already in the CSV (or in `<output>.keyframes`, which
also lists keyframes without people) are skipped, and each video's rows are appended in one atomic replace.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages are importable
    sys.path.insert(0, str(ROOT))

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (configs/*.py): data.fps, demo.detector...",
                                          lock_config=True)
_INPUT = flags.DEFINE_list("input", None, "videos and/or frame folders (comma-separated)")
_OUTPUT = flags.DEFINE_string("output", None, "the AVA proposal CSV to write (appended to, resumable)")


@contextmanager
def keyframes_of(path: str, config) -> Iterator[tuple[str, str, int, list[int]]]:
    """(video_id, frame folder, its start second, keyframe timestamps) of a video (decoded into a temporary
    folder, removed afterwards) or of a frame folder."""
    from acar_jax.inference import demo  # noqa: PLC0415 (flags are parsed before jax loads)
    from data_pipelines import frame_extraction  # noqa: PLC0415
    from data_pipelines.frame_index import FrameReadError, count_frames, probe_video  # noqa: PLC0415

    fps, stride = int(config.data.fps), int(config.demo.stride_s)
    if os.path.isdir(path):
        n = count_frames(path)
        start = int(config.data.start_second)
        yield os.path.basename(os.path.normpath(path)), path, start, \
            [start + t for t in demo.keyframe_timestamps(n, fps, stride)]
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input: no such video or frame folder: {path!r}")
    with tempfile.TemporaryDirectory(prefix="acar_detect_") as tmp:
        try:
            probe_video(path)
            n = frame_extraction.extract_frames(path, tmp, start_second=0, num_frames=0, fps=fps,
                                                height=int(config.demo.frame_height))
        except (FrameReadError, frame_extraction.FfmpegError) as e:
            raise ValueError(f"--input: {e}") from None
        yield demo.video_id_of(path), tmp, 0, demo.keyframe_timestamps(n, fps, stride)


def detect_persons(config, inputs: list[str], output: str) -> int:
    """Detects people at every keyframe of `inputs` not yet in `output`; returns the rows written."""
    from acar_jax.inference import proposals  # noqa: PLC0415
    from acar_jax.inference.person_detector import create_detector  # noqa: PLC0415

    csv = proposals.ProposalCsv(output)
    detector = None
    written = 0
    for path in inputs:
        with keyframes_of(path, config) as (video_id, frames_dir, start, timestamps):
            todo = csv.todo(video_id, timestamps)
            if not todo:
                print(f"{video_id}: all {len(timestamps)} keyframes already in {output}")
                continue
            detector = detector or create_detector(config.demo)
            found = dict(proposals.detect_keyframes(detector, frames_dir, todo, start_second=start,
                                                    fps=int(config.data.fps), desc=video_id))
            rows = csv.append(video_id, found)
            written += rows
            print(f"{video_id}: {rows} boxes at {len(todo)} keyframes ({len(timestamps) - len(todo)} done before) "
                  f"-> {output}")
    return written


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required (e.g. configs/default.py): its data.fps and demo.* fields")
    if not _INPUT.value or not _OUTPUT.value:
        raise app.UsageError("--input and --output are required")
    logging.set_verbosity(logging.WARNING)
    try:
        detect_persons(_CONFIG.value, _INPUT.value, _OUTPUT.value)
    except (ValueError, FileNotFoundError, ImportError) as e:
        sys.exit(f"detect_persons: {e}")


if __name__ == "__main__":
    app.run(main)
