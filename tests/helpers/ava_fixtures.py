"""Small files in the exact official AVA formats, written into a test's tmp_path (no binary committed)."""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
from PIL import Image

from configs import default
from tests.helpers import paths
from tests.helpers.videos import write_mp4

REPO = paths.REPO
LABEL_MAP_60 = paths.AVA_LABEL_MAP

# Official GT rows: video_id,timestamp,x1,y1,x2,y2,action_id,person_id (one row per action of a box).
GT_TRAIN = """\
-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1
-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,12,1
-5KQ66BBWC4,0902,0.332,0.194,0.481,0.891,17,0
-5KQ66BBWC4,0902,0.332,0.194,0.481,0.891,74,0
-5KQ66BBWC4,0903,0.081,0.158,0.285,0.802,12,1
1j20qq1JyX4,0904,0.000,0.100,1.0004,0.900,11,3
"""
# Detections (LFB / PySlowFast): video_id,timestamp,x1,y1,x2,y2,action_id,score; person boxes have no action.
PROPOSALS_TRAIN = """\
-5KQ66BBWC4,0902,0.100,0.200,0.300,0.800,12,0.95
-5KQ66BBWC4,0902,0.100,0.200,0.300,0.800,79,0.95
-5KQ66BBWC4,0903,0.500,0.500,0.600,0.700,14,0.9
-5KQ66BBWC4,0903,0.510,0.500,0.600,0.700,14,0.899
"""
GT_VAL = """\
1j20qq1JyX4,0902,0.100,0.100,0.500,0.900,12,0
1j20qq1JyX4,0903,0.100,0.100,0.500,0.900,12,0
"""
PROPOSALS_VAL = """\
1j20qq1JyX4,0902,0.100,0.100,0.500,0.900,,0.990
1j20qq1JyX4,0902,0.600,0.100,0.900,0.900,-1,0.850
1j20qq1JyX4,0902,0.700,0.100,0.900,0.900,,0.849
1j20qq1JyX4,0903,0.100,0.100,0.500,0.900,,0.970
1j20qq1JyX4,0904,0.100,0.100,0.500,0.900,,0.970
"""
EXCLUSIONS = """\
1j20qq1JyX4,0903
-5KQ66BBWC4,1000
"""
FPS = 2            # small frame folders: frame 1 = second 900, 2 frames a second
NUM_FRAMES = 12    # seconds 900 .. 905.5


def write(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def write_jpeg(path: pathlib.Path, value: int = 128, size: tuple[int, int] = (8, 12)) -> None:
    Image.fromarray(np.full([*size, 3], value, np.uint8)).save(path, quality=95)


def write_frames(frames_dir: pathlib.Path, num_frames: int) -> None:
    """A frame folder `image_%06d.jpg` of tiny JPEGs (one encoded, then copied: fast)."""
    frames_dir.mkdir(parents=True, exist_ok=True)
    first = frames_dir / "image_000001.jpg"
    write_jpeg(first)
    for i in range(2, num_frames + 1):
        shutil.copyfile(first, frames_dir / f"image_{i:06d}.jpg")


def write_video(path: pathlib.Path, num_frames: int, fps: int = 10, size: tuple[int, int] = (32, 48)) -> None:
    """An mp4 whose frame i is flat grey at level 20 * i (a counter readable after lossy coding)."""
    write_mp4(path, (np.full([*size, 3], min(20 * i, 255), np.uint8) for i in range(num_frames)), fps)


def write_ava_root(root: pathlib.Path) -> None:
    """An AVA-layout root: label map, train/val CSVs, proposals, exclusions and frame folders."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LABEL_MAP_60, root / LABEL_MAP_60.name)
    write(root / "ava_train_v2.2.csv", GT_TRAIN)
    write(root / "ava_val_v2.2.csv", GT_VAL)
    write(root / "train_proposals.csv", PROPOSALS_TRAIN)
    write(root / "ava_val_predicted_boxes.csv", PROPOSALS_VAL)
    write(root / "ava_val_excluded_timestamps_v2.2.csv", EXCLUSIONS)
    for video in ("-5KQ66BBWC4", "1j20qq1JyX4"):
        write_frames(root / "frames" / video, NUM_FRAMES)


def data_config(root: pathlib.Path, **overrides):
    """config.data of configs/default.py pointed at `root`, with the fixture's frame rate."""
    data = default.get_config().data
    data.dataset = "ava"
    data.root = os.fspath(root)
    data.fps = FPS
    data.start_second = 900
    data.frames_dir = "frames"
    data.label_map = LABEL_MAP_60.name
    data.train_csv = "ava_train_v2.2.csv"
    data.val_csv = "ava_val_v2.2.csv"
    data.exclusions = "ava_val_excluded_timestamps_v2.2.csv"
    data.train_proposals = "train_proposals.csv"
    data.val_proposals = "ava_val_predicted_boxes.csv"
    data.train_proposal_threshold = 0.9
    data.val_proposal_threshold = 0.85
    for k, v in overrides.items():
        data[k] = v
    return data
