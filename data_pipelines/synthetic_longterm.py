"""A generated AVA-format dataset whose long-term classes need a feature bank (the ACFB job, data.dataset
"synthetic_longterm", configs/default_longterm.py).

Same files as data_pipelines/synthetic.py (frames/<video_id>/image_%06d.jpg at 30 fps from second START_SECOND,
GT and predicted-box CSVs, exclusions, label map, synthetic_config.json), so the AVA readers take it as it is.

Every video is ONE static scene for all its `keyframes_per_video` seconds: ACTORS_PER_VIDEO rectangular actors
at fixed places, each with its own pose (tall / square / wide, distinct within a video: the actor's identity)
and base colour (never red), and a fixed "marker spot" at least `synthetic.relation_gap` px from every actor.
Each second s of the video (frames keyframe(s) - 15 ... keyframe(s) + 14) is an independent draw: each actor
is red for that whole second with probability `synthetic.p_event`, and the marker is shown at its spot for that
whole second with probability `synthetic.p_event`. Classes of an actor at keyframe t, R =
`synthetic.longterm_radius`:
  pose (the first NUM_POSE_CLASSES, mutually exclusive): tall / square / wide
  short_actor:   red now (in second t)
  short_context: marker now
  long_actor:    red in another second s of the window, 0 < |s - t| <= R
  long_context:  marker shown in another second of the window
Why a clip cannot tell the long-term classes and a bank window can:
- A clip around keyframe t (num_frames x frame_stride frames centred on it, 16 frames for configs/
  default_longterm.py) lies inside second t's 30 frames, so it shows exactly the events of second t
  (`clip_within_its_second` checks a clip window). The long-term labels are functions of the OTHER seconds'
  draws, which are independent of second t's: given the clip, they are at their prior rate (chance for ACAR).
- The bank entry of second s (a trained ACAR model's map of the clip at s) sees second s's events, and the
  bank window |s - t| <= bank.radius (= R) holds every second the labels read, and no other.
- The window is symmetric because a bank window is an unordered set: the ACFB head has no temporal position,
  so "red in the last R s" would be ambiguous for it; "in another second within R s" is exactly what the
  window's entries (minus the current one) say.
- The marker is outside every actor's box and farther from it than the tiny backbone's RoI feature reads
  (synthetic.LINEAR_HEAD_REACH), so a bank of actor features alone (LFB-style) cannot see it; the actor's own
  redness is in its own RoI feature, and its pose tells its bank entries from the other actor's.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np
from PIL import Image

from data_pipelines import synthetic
from data_pipelines.synthetic import FPS, START_SECOND, SyntheticClass

LABEL_MAP_FILE = "synthetic_longterm_action_list.pbtxt"
GENERATOR = "synthetic_longterm"        # written into synthetic_config.json: a default-set root is refused

CLASSES = synthetic.POSE_CLASSES + (
    SyntheticClass(4, "red now", "short_actor"),
    SyntheticClass(5, "marker now", "short_context"),
    SyntheticClass(6, "red in another second of the window", "long_actor"),
    SyntheticClass(7, "marker in another second of the window", "long_context"),
)
NUM_CLASSES = len(CLASSES)
NUM_POSE_CLASSES = len(synthetic.POSE_CLASSES)
GROUPS = ("pose", "short_actor", "short_context", "long_actor", "long_context")
RED_NOW, MARKER_NOW, RED_ELSEWHERE, MARKER_ELSEWHERE = 3, 4, 5, 6     # label columns

ACTORS_PER_VIDEO = 2
BASE_COLOURS = (1, 2, 3)                # synthetic.COLOURS rows other than red: green, blue, yellow
ACTOR_GAP = 8                           # px between the two actors' boxes
MARKER_SIZE = 12                        # a white "+", arms MARKER_ARM px thick
MARKER_ARM = 4
SECOND_HALF_SPAN = 15                   # second s covers frames keyframe(s) - 15 ... keyframe(s) + 14
MAX_PLACEMENT_ATTEMPTS = 2000


def class_groups() -> dict[str, tuple[int, ...]]:
    """Class ids per reported group, in GROUPS order; the long-term groups' names start with "long"."""
    return {kind: tuple(c.id for c in CLASSES if c.kind == kind) for kind in GROUPS}


# ----------------------------------------------------------------------------------------------- videos

Rect = synthetic.Rect


@dataclasses.dataclass(frozen=True)
class StaticActor:
    pose: int                   # 0 tall, 1 square, 2 wide
    colour: int                 # row of synthetic.COLOURS when not red
    rect: Rect                  # (row0, col0, row1, col1), half-open, the same in every frame


@dataclasses.dataclass(frozen=True)
class Video:
    actors: tuple[StaticActor, ...]
    marker: tuple[int, int]     # top-left pixel of the marker spot
    background: np.ndarray      # [H, W, 3] uint8
    red: np.ndarray             # [seconds, actors] bool: the actor is red during that second
    marker_shown: np.ndarray    # [seconds] bool: the marker is shown during that second


def _shape(rng: np.random.Generator, pose: int) -> tuple[int, int]:
    """(height, width) of an actor of `pose`, the sizes of synthetic.py."""
    if pose == 1:
        side = int(rng.integers(14, 20))
        return side, side
    long = int(rng.integers(20, 27))
    short = int(round(long / rng.uniform(1.7, 2.1)))
    return (long, short) if pose == 0 else (short, long)


def _random_rect(rng: np.random.Generator, h: int, w: int, height: int, width: int) -> Rect:
    """A rectangle of h x w inside the frame with a 1-px margin."""
    r0, c0 = int(rng.integers(1, height - h)), int(rng.integers(1, width - w))
    return r0, c0, r0 + h, c0 + w


def _place(rng: np.random.Generator, height: int, width: int, gap: int) -> tuple[tuple[StaticActor, ...], Rect]:
    poses = rng.permutation(3)[:ACTORS_PER_VIDEO]
    for _attempt in range(MAX_PLACEMENT_ATTEMPTS):
        actors: list[StaticActor] = []
        for pose in poses:
            h, w = _shape(rng, int(pose))
            rect = _random_rect(rng, h, w, height, width)
            if any(synthetic.rect_gap(rect, a.rect) < ACTOR_GAP for a in actors):
                break
            actors.append(StaticActor(int(pose), int(rng.choice(BASE_COLOURS)), rect))
        else:
            marker = _random_rect(rng, MARKER_SIZE, MARKER_SIZE, height, width)
            if all(synthetic.rect_gap(marker, a.rect) >= gap for a in actors):
                return tuple(actors), marker
    raise ValueError(f"synthetic.height/width = {height}x{width}: {ACTORS_PER_VIDEO} actors and a marker "
                     f"{gap} px from both (synthetic.relation_gap) do not fit in {MAX_PLACEMENT_ATTEMPTS} tries; "
                     "use wider frames or a smaller gap")


def sample_video(rng: np.random.Generator, synth: ml_collections.ConfigDict) -> Video:
    """One video's scene and its per-second events (draws in a fixed order: the seed gives the video)."""
    height, width, seconds = int(synth.height), int(synth.width), int(synth.keyframes_per_video)
    actors, marker = _place(rng, height, width, int(synth.relation_gap))
    background = synthetic._background(rng, height, width)
    p = float(synth.p_event)
    red = rng.random((seconds, len(actors))) < p
    marker_shown = rng.random(seconds) < p
    return Video(actors, marker[:2], background, red, marker_shown)


def second_of_frame(frame: int, seconds: int) -> int:
    """The second (0-based keyframe index) whose events a 1-based frame shows: keyframe(s) - 15 ... + 14; the
    frames before the first and after the last second's span show the first / last second."""
    return min(max((frame + SECOND_HALF_SPAN - 1) // FPS - 1, 0), seconds - 1)


def second_frames(second: int) -> tuple[int, int]:
    """(first, last) 1-based frame of a second's span."""
    k = synthetic.keyframe_frame(START_SECOND + 1 + second)
    return k - SECOND_HALF_SPAN, k + SECOND_HALF_SPAN - 1


def clip_within_its_second(num_frames: int, frame_stride: int) -> bool:
    """Whether the clip window of every keyframe (num_frames x frame_stride frames, keyframe at its centre as
    data_pipelines/frame_index.clip_frame_indices cuts it) lies inside that keyframe's second."""
    span = num_frames * frame_stride
    return span // 2 <= SECOND_HALF_SPAN and span - span // 2 - 1 <= SECOND_HALF_SPAN - 1


def render(video: Video, second: int) -> np.ndarray:
    """Every frame of `second`: [H, W, 3] uint8 (the scene is static within a second)."""
    frame = video.background.copy()
    if video.marker_shown[second]:
        top, left = video.marker
        mid = (MARKER_SIZE - MARKER_ARM) // 2
        frame[top + mid:top + mid + MARKER_ARM, left:left + MARKER_SIZE] = synthetic.MARKER_COLOUR
        frame[top:top + MARKER_SIZE, left + mid:left + mid + MARKER_ARM] = synthetic.MARKER_COLOUR
    for i, a in enumerate(video.actors):
        r0, c0, r1, c1 = a.rect
        frame[r0:r1, c0:c1] = synthetic.COLOURS[synthetic.RED if video.red[second, i] else a.colour]
    return frame


def window_seconds(second: int, seconds: int, radius: int) -> list[int]:
    """The OTHER seconds of the window around `second`: 0 < |s - second| <= radius, inside the video."""
    return [s for s in range(max(second - radius, 0), min(second + radius + 1, seconds)) if s != second]


def video_labels(video: Video, radius: int) -> np.ndarray:
    """[seconds, actors, NUM_CLASSES] float32 multi-hot labels, in CLASSES order."""
    seconds, n = video.red.shape
    labels = np.zeros((seconds, n, NUM_CLASSES), np.float32)
    for t in range(seconds):
        others = window_seconds(t, seconds, radius)
        for i, a in enumerate(video.actors):
            labels[t, i, a.pose] = 1
            labels[t, i, RED_NOW] = video.red[t, i]
            labels[t, i, MARKER_NOW] = video.marker_shown[t]
            labels[t, i, RED_ELSEWHERE] = bool(video.red[others, i].any())
            labels[t, i, MARKER_ELSEWHERE] = bool(video.marker_shown[others].any())
    return labels


def _box(rect: Rect, height: int, width: int) -> np.ndarray:
    r0, c0, r1, c1 = rect
    return np.array([c0 / width, r0 / height, c1 / width, r1 / height], np.float64)


def write_video(frames_dir: str, video_id: str, rng: np.random.Generator, synth: ml_collections.ConfigDict, *,
                labelled_proposals: bool) -> tuple[list[str], list[str]]:
    """Writes one video's frames; returns (gt_rows, proposal_rows) as CSV lines (synthetic.write_video's)."""
    height, width = int(synth.height), int(synth.width)
    video = sample_video(rng, synth)
    seconds = len(video.marker_shown)
    video_dir = os.path.join(frames_dir, video_id)
    os.makedirs(video_dir)
    encoded = {}
    for frame in range(1, FPS * (seconds + 1) + 1):
        second = second_of_frame(frame, seconds)
        if second not in encoded:            # a second's frames are identical: encode once
            path = os.path.join(video_dir, f"image_{frame:06d}.jpg")
            Image.fromarray(render(video, second)).save(path, quality=int(synth.jpeg_quality))
            with open(path, "rb") as f:
                encoded[second] = f.read()
            continue
        with open(os.path.join(video_dir, f"image_{frame:06d}.jpg"), "wb") as f:
            f.write(encoded[second])
    labels = video_labels(video, int(synth.longterm_radius))
    boxes = [_box(a.rect, height, width) for a in video.actors]
    gt_rows, proposal_rows = [], []
    for t in range(seconds):
        ts = START_SECOND + 1 + t
        for i, box in enumerate(boxes):
            for c in np.flatnonzero(labels[t, i]):
                gt_rows.append(f"{video_id},{ts:04d},{synthetic._fmt_box(box)},{CLASSES[c].id},{i}")
        for box, gt, score in synthetic.proposals_for_boxes(rng, boxes):
            actions = [CLASSES[c].id for c in np.flatnonzero(labels[t, gt])] if labelled_proposals and gt >= 0 \
                else [""]
            proposal_rows += [f"{video_id},{ts:04d},{synthetic._fmt_box(box)},{a},{score:.3f}" for a in actions]
    return gt_rows, proposal_rows


# ----------------------------------------------------------------------------------------------- dataset

SETTINGS = ("seed", "num_train_videos", "num_val_videos", "keyframes_per_video", "height", "width",
            "relation_gap", "jpeg_quality", "longterm_radius", "p_event")


def settings(synth: ml_collections.ConfigDict) -> dict:
    """What synthetic_config.json records: the generator's name and every setting that changes the files."""
    return {"generator": GENERATOR, **{k: synth[k] for k in SETTINGS}}


def label_map_text() -> str:
    """The long-term label map in the AVA .pbtxt format."""
    return synthetic.label_map_text(CLASSES)


def _check_settings(synth: ml_collections.ConfigDict) -> None:
    for key in ("num_train_videos", "num_val_videos", "keyframes_per_video", "longterm_radius"):
        if int(synth[key]) < 1:
            raise ValueError(f"config.synthetic.{key}: expected >= 1, got {synth[key]}")
    if not 0.0 < float(synth.p_event) < 1.0:
        raise ValueError(f"config.synthetic.p_event: expected a probability in (0, 1), got {synth.p_event}")
    if int(synth.relation_gap) <= synthetic.LINEAR_HEAD_REACH:
        raise ValueError(f"config.synthetic.relation_gap: {synth.relation_gap} px lets an actor's RoI feature read "
                         f"the marker (it reads {synthetic.LINEAR_HEAD_REACH} px beyond the box); use more")


def write_dataset(out_dir: str, synth: ml_collections.ConfigDict) -> None:
    """Writes the whole dataset into the existing, empty directory `out_dir` (see ensure_dataset)."""
    _check_settings(synth)
    synthetic.write_generated_set(out_dir, synth, write_video, prefix="long", streams=(10, 11, 12),
                                  label_map=(LABEL_MAP_FILE, label_map_text()), settings=settings(synth))


def ensure_dataset(root: str, synth: ml_collections.ConfigDict) -> None:
    """Writes the dataset to `root` unless it is there, atomically; a root written by another generator or
    with other settings is an error naming both (synthetic.ensure_synthetic_dataset's contract)."""
    _check_settings(synth)
    synthetic.ensure_dataset_dir(root, settings(synth), lambda out: write_dataset(out, synth))
