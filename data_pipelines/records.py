"""Keyframe records: what the file readers hand to the tf.data pipeline (one record per (video, timestamp)).

A record holds every box of one keyframe, so a keyframe is never split across examples (HR2O attends across
all its actors). Boxes are normalised x1, y1, x2, y2 on the original frame, exactly as read from the CSV.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FrameSource:
    """Where a keyframe's frames come from.

    AVA: `frames_dir` holds image_%06d.jpg, frame 1 at `start_second`, `fps` frames per second.
    Kinetics: `video_path` is an mp4 decoded whole; `keyframe_index` is 0-based into its decoded frames.
    """
    frames_dir: str = ""
    video_path: str = ""
    keyframe_index: int = 0     # AVA: 1-based frame number of the keyframe; Kinetics: 0-based decoded index
    num_frames: int = 0         # frames available in the video (0: unknown until decoded)


@dataclasses.dataclass(frozen=True)
class KeyframeRecord:
    """All boxes of one keyframe and their labels."""
    video_id: str
    timestamp: int
    boxes: np.ndarray           # [n, 4] float32 normalised x1y1x2y2, original frame
    labels: np.ndarray          # [n, K] float32 multi-hot over the label map's classes (all zero if unlabelled)
    scores: np.ndarray          # [n] float32: 1.0 for GT boxes, detector score for proposals
    person_ids: np.ndarray      # [n] int32: -1 where unknown (detections)
    source: FrameSource

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])
