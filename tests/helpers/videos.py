"""The one mp4 writer of the tests: frames (RGB uint8 arrays) -> a video file, through PyAV."""

from __future__ import annotations

import os
from collections.abc import Iterable

import av
import numpy as np


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int, *, codec: str = "mpeg4",
              options: dict[str, str] | None = None) -> None:
    """Encodes `frames` ([H, W, 3] uint8, all one size) at `fps`; mpeg4 at qscale 2 unless told otherwise."""
    with av.open(os.fspath(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"qscale": "2"} if options is None else dict(options)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
