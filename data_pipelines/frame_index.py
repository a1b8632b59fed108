"""Frame sources: which frames make a clip, where they are on disk, and how they are decoded.

AVA frames are folders of `image_%06d.jpg` (frame 1 = `start_second`, 30 fps, as the reference's
`tools/extract_frames.py` writes them); Kinetics clips are mp4 files decoded whole with PyAV.
"""

from __future__ import annotations

import os

import av
import numpy as np
from PIL import Image

FRAME_PATTERN = "image_{:06d}.jpg"
POLICIES = ("loop", "last")


class FrameReadError(RuntimeError):
    """A frame or video exists but cannot be decoded; the message names the file."""


def ava_keyframe_number(timestamp: int, start_second: int, fps: int) -> int:
    """1-based frame number of the keyframe at `timestamp` seconds: frame 1 is `start_second`."""
    return (timestamp - start_second) * fps + 1


def clip_frame_indices(keyframe_index: int, num_frames: int, stride: int, num_available: int, *,
                       policy: str = "loop", first_index: int = 1) -> np.ndarray:
    """Frame indices of the clip around keyframe k: `num_frames` frames at `stride`, k at num_frames // 2.

    The window is the span = `num_frames * stride` frames `k - span // 2 ... k + span // 2 - 1`, sampled every
    `stride` (32 frames at stride 2: k-32, k-30, ..., k+30). Frames exist at `first_index ... first_index +
    num_available - 1` (1-based AVA frame numbers, 0-based Kinetics decoded indices). Where the window is cut
    by an end of the video:
      "loop":  the reference (`TemporalCenterCrop(span, stride)` over the window's available frames): the
               frames that exist are repeated in order until the window is full, then sampled every `stride`.
      "last":  the window slides inside the video (near the end: the last `span` frames, as the paper takes
               for Kinetics); a video shorter than the window loops as above.
    Returns int64 [num_frames].
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    last = first_index + num_available - 1
    if num_available < 1 or not first_index <= keyframe_index <= last:
        raise ValueError(f"keyframe index {keyframe_index} is outside the available frames "
                         f"{first_index}..{last} ({num_available} frames)")
    span = num_frames * stride
    begin = keyframe_index - span // 2
    if policy == "last":
        begin = max(first_index, min(begin, last + 1 - span))
    window = np.arange(max(begin, first_index), min(begin + span, last + 1))
    # TemporalCenterCrop: a window shorter than `span` is looped (the crop itself starts at 0 in that case).
    looped = np.resize(window, span)
    return looped[::stride].astype(np.int64)


def frame_paths(frames_dir: str, indices) -> list[str]:
    """Paths of frames `indices` (1-based) in a frame folder; FileNotFoundError naming the first missing."""
    paths = [os.path.join(frames_dir, FRAME_PATTERN.format(int(i))) for i in indices]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"frame file {path} does not exist")
    return paths


def count_frames(frames_dir: str) -> int:
    """Number of frames in a frame folder: the highest `image_%06d.jpg` number, checked to be contiguous."""
    if not os.path.isdir(frames_dir):
        raise FileNotFoundError(f"frame folder {frames_dir} does not exist")
    numbers = []
    for name in os.listdir(frames_dir):
        if name.startswith("image_") and name.endswith(".jpg"):
            try:
                numbers.append(int(name[6:-4]))
            except ValueError:
                continue
    if numbers and max(numbers) != len(numbers):
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        first_missing = os.path.join(frames_dir, FRAME_PATTERN.format(missing[0]))
        raise FileNotFoundError(f"frame folder {frames_dir} has {len(numbers)} frames numbered up to "
                                f"{max(numbers)}; missing e.g. {first_missing}")
    return len(numbers)


def read_frame(path: str) -> np.ndarray:
    """Decodes one JPEG to uint8 [H, W, 3] RGB; FileNotFoundError / FrameReadError naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"frame file {path} does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise FrameReadError(f"cannot decode frame {path}: {e}") from e


def probe_video(path: str) -> tuple[int, float]:
    """(number of frames, frames per second) of a video's first video stream, from its header when it has one
    and by demuxing otherwise; FrameReadError naming the file."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            n = stream.frames or sum(1 for p in container.demux(stream) if p.size)
    except (av.FFmpegError, IndexError, OSError) as e:
        raise FrameReadError(f"cannot read video {path}: {e}") from e
    if n < 1 or fps <= 0:
        raise FrameReadError(f"video {path} has no decodable frames (frames {n}, fps {fps})")
    return n, fps


def decode_video(path: str) -> np.ndarray:
    """Decodes every frame of a video to uint8 [T, H, W, 3] RGB; FileNotFoundError / FrameReadError naming
    the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file {path} does not exist")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.FFmpegError, IndexError, OSError) as e:
        raise FrameReadError(f"cannot decode video {path}: {e}") from e
    if not frames:
        raise FrameReadError(f"video {path} has no decodable frames")
    return np.stack(frames)
