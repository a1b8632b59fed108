"""Person proposals of keyframes: a PersonDetector over a frame folder's keyframes, and the AVA proposal CSV
(`video_id,timestamp,x1,y1,x2,y2,,score`, normalised boxes, what data_pipelines/ava_files.py reads with
scores) written so that a long job can stop and go on: tools/detect_persons.py and the demo share this.

Resume: `<csv>.keyframes` lists every keyframe already looked at (`video_id,timestamp`), people found or not;
a keyframe with rows in the CSV or a line there is skipped. Each video's rows are appended in one atomic
replace of the CSV (the old rows + the new, written beside it and renamed), then its keyframes are listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from acar_jax.inference.detections import Detections
from acar_jax.inference.person_detector import PersonDetector
from data_pipelines import ava_files, frame_extraction
from data_pipelines.frame_index import ava_keyframe_number

DONE_SUFFIX = ".keyframes"


def keyframe_image(frames_dir: str, timestamp: int, start_second: int, fps: int) -> np.ndarray:
    """The RGB uint8 keyframe of second `timestamp` of a frame folder (frame 1 = `start_second`)."""
    path = os.path.join(frames_dir, frame_extraction.FRAME_PATTERN % ava_keyframe_number(timestamp, start_second,
                                                                                         fps))
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def detect_keyframes(detector: PersonDetector, frames_dir: str, timestamps: Iterable[int], *, start_second: int,
                     fps: int, desc: str = "person detector") -> Iterator[tuple[int, Detections]]:
    """(timestamp, Detections) of each keyframe, with a progress bar."""
    timestamps = list(timestamps)
    for t in tqdm(timestamps, desc=desc, unit="keyframe"):
        yield t, detector.detect(keyframe_image(frames_dir, t, start_second, fps))


def to_ava_boxes(video_id: str, timestamp: int, found: Detections, source: str) -> list[ava_files.AvaBox]:
    """Detections as the AvaBox rows a boxes CSV would give (no labels, person_id -1)."""
    return [ava_files.AvaBox(video_id, int(timestamp), tuple(float(v) for v in box), np.zeros(0, np.float32),
                             float(score), -1, 0, source) for box, score in zip(found.boxes, found.scores, strict=True)]


def csv_rows(video_id: str, timestamp: int, found: Detections) -> list[str]:
    """AVA proposal rows (6 decimals) of one keyframe's detections."""
    return [f"{video_id},{int(timestamp)},{','.join(f'{v:.6f}' for v in box)},,{score:.6f}"
            for box, score in zip(found.boxes, found.scores, strict=True)]


class ProposalCsv:
    """An AVA proposal CSV being written: which keyframes are done, and the atomic per-video append."""

    def __init__(self, path: str):
        self.path, self.done_path = path, path + DONE_SUFFIX
        self.done: set[tuple[str, int]] = set()
        for file in (self.path, self.done_path):
            if os.path.isfile(file):
                with open(file) as f:
                    for line_no, line in enumerate(f, start=1):
                        fields = line.strip().split(",")
                        if not line.strip():
                            continue
                        try:
                            self.done.add((fields[0], int(fields[1])))
                        except (IndexError, ValueError):
                            raise ValueError(f"{file}:{line_no}: expected video_id,timestamp,... got "
                                             f"{line.strip()!r}") from None

    def todo(self, video_id: str, timestamps: Iterable[int]) -> list[int]:
        return [t for t in timestamps if (video_id, int(t)) not in self.done]

    def append(self, video_id: str, keyframes: dict[int, Detections]) -> int:
        """Adds one video's keyframes (rows in one atomic replace of the CSV, then the done list); returns rows."""
        rows = [r for t in sorted(keyframes) for r in csv_rows(video_id, t, keyframes[t])]
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        old = open(self.path).read() if os.path.isfile(self.path) else ""
        if old and not old.endswith("\n"):
            old += "\n"
        _replace(self.path, old + "".join(r + "\n" for r in rows))
        old_done = open(self.done_path).read() if os.path.isfile(self.done_path) else ""
        _replace(self.done_path, old_done + "".join(f"{video_id},{t}\n" for t in sorted(keyframes)))
        self.done.update((video_id, int(t)) for t in keyframes)
        return len(rows)


def _replace(path: str, text: str) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
