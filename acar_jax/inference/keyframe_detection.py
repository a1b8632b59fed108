"""Person boxes for every keyframe of videos or frame folders, written as an AVA proposal CSV: the work behind
tools/detect_persons.py, in the library so that a caller (and a test) needs no command-line flags.

Keyframes are the demo's: one every config.demo.stride_s seconds at config.data.fps. A video is decoded as the
demo decodes it (height config.demo.frame_height, second 0 = frame 1; the video_id is its file name without the
extension); a frame folder of image_%06d.jpg is read as evaluation reads it (frame 1 = second
config.data.start_second; the video_id is the folder's name).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import ml_collections

from acar_jax.inference import demo, proposals
from acar_jax.inference.person_detector import create_detector
from data_pipelines import frame_extraction
from data_pipelines.frame_index import FrameReadError, count_frames, probe_video


@contextmanager
def keyframes_of(path: str, config: ml_collections.ConfigDict) -> Iterator[tuple[str, str, int, list[int]]]:
    """(video_id, frame folder, its start second, keyframe timestamps) of a video (decoded into a temporary
    folder, removed afterwards) or of a frame folder."""
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


def detect_persons(config: ml_collections.ConfigDict, inputs: list[str], output: str) -> int:
    """Detects people at every keyframe of `inputs` not yet in `output`; returns the rows written."""
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
