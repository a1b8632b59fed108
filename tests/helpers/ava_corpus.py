"""A small AVA v2.2 corpus in the exact formats and under the exact file names of the official distribution,
written by code (nothing is copied from the dataset): what `configs/ava_slowfast_r50_acar.py` reads under its
`data.root` ("data/ava", relative to the working directory).

What it holds, because real files hold it:
- the LFB / PySlowFast proposal files (`person_box_67091280_iou90/...`): 8 columns with a score; detections
  matched to a GT box carry its actions from the full 80-id vocabulary (ids outside the 60-class map), unmatched
  ones -1 (train) or an empty action column (val); some scores below the config's thresholds;
- zero-padded timestamps ("0902"), video ids beginning with "-" and "_", CRLF line endings, trailing blank
  lines in every CSV;
- a keyframe with 100 boxes in each split (more than the config's largest box bucket);
- six frame sizes at height 340 (AVA's mix of aspect ratios), 30 fps JPEG frames from second 900.
Frames are flat grey with one bright rectangle (tiny JPEGs: one encoded per video, then copied).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

import numpy as np
from PIL import Image

from tests.helpers.ava_fixtures import LABEL_MAP_60

FPS = 30
START_SECOND = 900
SECONDS = 5                    # frames of seconds 900 .. 905: every 32-frame window of keyframes 902 and 903
NUM_FRAMES = SECONDS * FPS + 1
TRAIN_PROPOSALS = "person_box_67091280_iou90/ava_detection_train_boxes_and_labels_include_negative_v2.2.csv"
VAL_PROPOSALS = "person_box_67091280_iou90/ava_detection_val_boxes_and_labels.csv"
CROWD = 100                    # boxes of the crowded keyframe
OUTSIDE_60 = (2, 16, 18, 75)   # AVA action ids the 60-class label map omits


@dataclasses.dataclass(frozen=True)
class Video:
    video_id: str
    height: int
    width: int


# Six frame sizes at height 340 (frames are extracted with `scale=-1:340`).
VIDEOS = (
    Video("-dashFirst1", 340, 453),
    Video("_underFirst", 340, 453),
    Video("wideVideo_2", 340, 604),
    Video("squareVid-3", 340, 340),
    Video("portrait__4", 340, 256),
    Video("wide510vid5", 340, 510),
    Video("wide680vid6", 340, 680),
)
TRAIN_VIDEOS = VIDEOS[:2]                 # one frame size: one compiled train step
VAL_VIDEOS = VIDEOS[1:]                   # six frame sizes
CROWD_TRAIN = ("wideVideo_2", 903)        # the 100-box keyframe of each split
CROWD_VAL = ("squareVid-3", 903)
EXCLUDED = ("wide680vid6", 903)


def _crlf(rows: list[str]) -> str:
    """CRLF line endings and two trailing blank lines, as some distributed files have."""
    return "".join(r + "\r\n" for r in rows) + "\r\n\r\n"


def _box(i: int, n: int) -> tuple[float, float, float, float]:
    """The i-th of n distinct boxes inside the unit square."""
    x1 = 0.05 + 0.6 * i / max(n, 1)
    y1 = 0.1 + 0.3 * (i % 7) / 7
    return round(x1, 3), round(y1, 3), round(x1 + 0.3, 3), round(y1 + 0.5, 3)


def _fmt(video: str, second: int, box, action: str, last: str) -> str:
    return f"{video},{second:04d},{box[0]:.3f},{box[1]:.3f},{box[2]:.3f},{box[3]:.3f},{action},{last}"


def train_rows() -> tuple[list[str], list[str]]:
    """(GT rows, include_negative proposal rows) of the train split."""
    gt, props = [], []
    for v in TRAIN_VIDEOS:
        for second in (902, 903):
            a, b = (0.1, 0.15, 0.45, 0.95), (0.5, 0.1, 0.9, 0.9)
            gt += [_fmt(v.video_id, second, a, "12", "0"), _fmt(v.video_id, second, a, "80", "0"),
                   _fmt(v.video_id, second, a, "2", "0"),                 # id outside the 60: skipped
                   _fmt(v.video_id, second, b, "17", "1")]
            near_a = (0.11, 0.16, 0.45, 0.94)                            # matched to GT a: a's actions, 80 ids
            props += [_fmt(v.video_id, second, near_a, act, "0.98") for act in ("12", "80", "2")]
            props += [_fmt(v.video_id, second, (0.6, 0.2, 0.8, 0.7), "-1", "0.93"),   # a person, no action
                      _fmt(v.video_id, second, (0.0, 0.3, 0.2, 0.6), "-1", "0.55")]   # below 0.9: dropped
    video, second = CROWD_TRAIN
    for i in range(40):
        gt.append(_fmt(video, second, _box(i, 40), "14", str(i)))
    for i in range(CROWD - 40):       # 60 more people, some matched to GT actions outside the 60
        action = str(OUTSIDE_60[i % len(OUTSIDE_60)]) if i % 3 == 0 else "-1"
        x1, _, x2, _ = _box(i, CROWD - 40)
        props.append(_fmt(video, second, (x1, 0.02, x2, 0.09), action, "0.95"))
    return gt, props


def val_rows() -> tuple[list[str], list[str]]:
    """(GT rows, proposal rows) of the val split."""
    gt, props = [], []
    for v in VAL_VIDEOS:
        for second in (902, 903):
            if (v.video_id, second) == CROWD_VAL:
                continue
            a = (0.2, 0.1, 0.6, 0.9)
            gt += [_fmt(v.video_id, second, a, "12", "0"), _fmt(v.video_id, second, a, "79", "0"),
                   _fmt(v.video_id, second, a, "16", "0")]                # outside the 60
            props += [_fmt(v.video_id, second, (0.21, 0.1, 0.6, 0.88), "12", "0.97"),
                      _fmt(v.video_id, second, (0.21, 0.1, 0.6, 0.88), "16", "0.97"),
                      _fmt(v.video_id, second, (0.65, 0.2, 0.95, 0.8), "", "0.9"),
                      _fmt(v.video_id, second, (0.0, 0.2, 0.1, 0.8), "", "0.84")]     # below 0.85
    video, second = CROWD_VAL
    for i in range(CROWD):
        box = _box(i, CROWD)
        gt.append(_fmt(video, second, box, "80", str(i)))
        props.append(_fmt(video, second, box, "80" if i % 2 else "-1", "0.96"))
    return gt, props


def write_frames(frames_dir: pathlib.Path, video: Video, seed: int) -> None:
    """`image_%06d.jpg` frames 1..NUM_FRAMES (frame 1 = second 900 at 30 fps): flat grey, one bright box."""
    frames_dir.mkdir(parents=True, exist_ok=True)
    img = np.full([video.height, video.width, 3], 60 + 10 * seed, np.uint8)
    img[video.height // 4: video.height // 2, video.width // 3: video.width // 2] = 230
    first = frames_dir / "image_000001.jpg"
    Image.fromarray(img).save(first, quality=75)
    for i in range(2, NUM_FRAMES + 1):
        shutil.copyfile(first, frames_dir / f"image_{i:06d}.jpg")


def write_corpus(root: pathlib.Path, *, frames: bool = True) -> pathlib.Path:
    """Writes the corpus under `root` (e.g. <tmp>/data/ava) and returns `root`; `frames=False`: the annotation
    files and empty frame folders only (for tests that never read a frame)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LABEL_MAP_60, root / LABEL_MAP_60.name)
    (root / "person_box_67091280_iou90").mkdir(exist_ok=True)
    gt, props = train_rows()
    (root / "ava_train_v2.2.csv").write_bytes(_crlf(gt).encode())
    (root / TRAIN_PROPOSALS).write_bytes(_crlf(props).encode())
    gt, props = val_rows()
    (root / "ava_val_v2.2.csv").write_bytes(_crlf(gt).encode())
    (root / VAL_PROPOSALS).write_bytes(_crlf(props).encode())
    (root / "ava_val_excluded_timestamps_v2.2.csv").write_bytes(_crlf([f"{EXCLUDED[0]},{EXCLUDED[1]:04d}"]).encode())
    for i, video in enumerate(VIDEOS):
        if frames:
            write_frames(root / "frames" / video.video_id, video, i)
        else:
            (root / "frames" / video.video_id).mkdir(parents=True, exist_ok=True)
    return root
