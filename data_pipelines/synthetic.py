"""A generated AVA-format dataset whose relational classes need another actor or the scene (the default job).

Layout under the root (the official file formats; names are the defaults of `configs/default.py`):
  frames/<video_id>/image_%06d.jpg      30 fps, frame 1 = second START_SECOND, keyframes every second
  ava_train_v2.2.csv, ava_val_v2.2.csv  video_id,timestamp,x1,y1,x2,y2,action_id,person_id
  synthetic_action_list.pbtxt           AVA label map: item { name: "..." id: N }
  ava_val_excluded_timestamps_v2.2.csv  video_id,timestamp
  ava_{train,val}_predicted_boxes.csv   video_id,timestamp,x1,y1,x2,y2,action_id,score (jittered GT + false
                                        positives; train rows carry the matched GT's actions, as LFB's do)
  synthetic_config.json                 the generator settings (a root made with other settings is refused)

Every keyframe is its own scene (cuts half a second either side of it), so each video gives
`keyframes_per_video` independent samples. A scene has MIN_ACTORS-MAX_ACTORS rectangular actors moving in
straight lines on a smooth background and sometimes a white "+" marker object (never boxed). Classes:
  pose (mutually exclusive, the first NUM_POSE_CLASSES, for pose_softmax): tall / square / wide actor
  actor-only: moving, red, hollow (outline only)       - visible in the actor's own box
  relational: partner pose in the scene (another actor has the pose after the actor's own in the cycle tall ->
              square -> wide -> tall: it relates the actor's own attribute to another's, and the actor itself
              never counts), marker in the scene, another actor is moving
The evidence of a relational class lies outside what a head reading only the actor's RoI feature can see: every
pair of actors, and the marker and every actor, are `synthetic.relation_gap` pixels apart (the gap between their
rectangles swept over the whole scene; 84 by default), more than LINEAR_HEAD_REACH, the distance beyond its box at
which the RoI feature of the default tiny backbone stops depending on the pixels at all (its receptive field; a
test measures it by gradient). So a Linear head cannot tell the relational classes, however long it trains, while
one that relates the actor to the context map and to the other actors (ACAR) can. Frames are wide strips (64x384
by default) so that 2-3 actors and the marker fit at these gaps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable

import ml_collections
import numpy as np
from PIL import Image

FPS = 30
START_SECOND = 900
SCENE_HALF_SPAN = 15            # a scene covers keyframe frame k - 15 .. k + 14 (cuts half a second away)

LABEL_MAP_FILE = "synthetic_action_list.pbtxt"
TRAIN_CSV = "ava_train_v2.2.csv"
VAL_CSV = "ava_val_v2.2.csv"
EXCLUSIONS_CSV = "ava_val_excluded_timestamps_v2.2.csv"
TRAIN_PROPOSALS_CSV = "ava_train_predicted_boxes.csv"
VAL_PROPOSALS_CSV = "ava_val_predicted_boxes.csv"
CONFIG_FILE = "synthetic_config.json"


@dataclasses.dataclass(frozen=True)
class SyntheticClass:
    id: int
    name: str
    kind: str                   # "pose" | "actor" | "relational"


POSE_CLASSES = (               # the actor's box shape; shared with the long-term set (synthetic_longterm.py)
    SyntheticClass(1, "pose: tall", "pose"),
    SyntheticClass(2, "pose: square", "pose"),
    SyntheticClass(3, "pose: wide", "pose"),
)
CLASSES = POSE_CLASSES + (
    SyntheticClass(4, "moving", "actor"),
    SyntheticClass(5, "red", "actor"),
    SyntheticClass(6, "hollow", "actor"),
    SyntheticClass(7, "partner pose in the scene", "relational"),
    SyntheticClass(8, "marker in the scene", "relational"),
    SyntheticClass(9, "another actor is moving", "relational"),
)
NUM_CLASSES = len(CLASSES)
NUM_POSE_CLASSES = len(POSE_CLASSES)

COLOURS = np.array([[215, 45, 40], [40, 185, 70], [55, 85, 225], [230, 205, 45]], np.uint8)  # red, green, ...
RED = 0
MARKER_COLOUR = np.array([250, 250, 250], np.uint8)
MARKER_SIZE = 9
HOLLOW_THICKNESS = 3
P_MOVING, P_HOLLOW, P_MARKER = 0.3, 0.35, 0.5
SPEED_RANGE = (0.6, 0.9)        # pixels per frame
MIN_ACTORS, MAX_ACTORS = 2, 3
LINEAR_HEAD_REACH = 75          # px beyond the box that the default tiny backbone's RoI feature reads (measured)
MAX_SCENE_ATTEMPTS = 2000       # placement tries before a frame size is declared too small


def class_groups() -> dict[str, tuple[int, ...]]:
    """Class ids per kind, for per-group reports: {"pose": ..., "actor": ..., "relational": ...}."""
    return {kind: tuple(c.id for c in CLASSES if c.kind == kind) for kind in ("pose", "actor", "relational")}


# --------------------------------------------------------------------------------------------- scenes

@dataclasses.dataclass(frozen=True)
class Actor:
    colour: int
    pose: int                   # 0 tall, 1 square, 2 wide
    hollow: bool
    height: int
    width: int
    cy: float                   # centre at the keyframe, pixels
    cx: float
    vy: float                   # pixels per frame
    vx: float

    @property
    def moving(self) -> bool:
        return self.vy != 0.0 or self.vx != 0.0

    def rect(self, dt: float) -> tuple[int, int, int, int]:
        """Drawn pixel rectangle (row0, col0, row1, col1), half-open, at `dt` frames from the keyframe."""
        r0 = int(round(self.cy + self.vy * dt - self.height / 2))
        c0 = int(round(self.cx + self.vx * dt - self.width / 2))
        return r0, c0, r0 + self.height, c0 + self.width


@dataclasses.dataclass(frozen=True)
class Scene:
    actors: tuple[Actor, ...]
    marker: tuple[int, int] | None          # top-left pixel of the marker
    background: np.ndarray                  # [H, W, 3] uint8


def _sample_actor_shape(rng: np.random.Generator) -> tuple[int, int, int]:
    pose = int(rng.integers(3))
    if pose == 1:
        side = int(rng.integers(14, 20))
        return pose, side, side
    long = int(rng.integers(20, 27))
    short = int(round(long / rng.uniform(1.7, 2.1)))
    return (pose, long, short) if pose == 0 else (pose, short, long)


Rect = tuple[int, int, int, int]    # (row0, col0, row1, col1), half-open pixel rectangle


def swept_rect(actor: Actor) -> Rect:
    """The rectangle covering every frame of the actor's scene (motion is linear, so its two ends bound it)."""
    first, last = actor.rect(-SCENE_HALF_SPAN), actor.rect(SCENE_HALF_SPAN - 1)
    return (min(first[0], last[0]), min(first[1], last[1]), max(first[2], last[2]), max(first[3], last[3]))


def rect_gap(a: Rect, b: Rect) -> int:
    """Pixels between two rectangles along the axis that separates them most (Chebyshev gap; <= 0: touching)."""
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])


def _place_actors(rng: np.random.Generator, n: int, height: int, width: int, gap: int) -> tuple[Actor, ...] | None:
    actors: list[Actor] = []
    for _ in range(n):
        colour = int(rng.integers(len(COLOURS)))
        pose, h, w = _sample_actor_shape(rng)
        hollow = bool(rng.random() < P_HOLLOW)
        vy = vx = 0.0
        if rng.random() < P_MOVING:
            angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*SPEED_RANGE)
            vy, vx = float(speed * np.sin(angle)), float(speed * np.cos(angle))
        for _attempt in range(60):
            cy, cx = rng.uniform(h / 2, height - h / 2), rng.uniform(w / 2, width - w / 2)
            actor = Actor(colour, pose, hollow, h, w, float(cy), float(cx), vy, vx)
            r0, c0, r1, c1 = swept = swept_rect(actor)
            if r0 < 1 or c0 < 1 or r1 > height - 1 or c1 > width - 1:
                continue
            if all(rect_gap(swept, swept_rect(a)) >= gap for a in actors):
                actors.append(actor)
                break
        else:
            return None
    return tuple(actors)


def marker_rect(marker: tuple[int, int]) -> Rect:
    """The marker's pixel rectangle from its top-left corner."""
    return (marker[0], marker[1], marker[0] + MARKER_SIZE, marker[1] + MARKER_SIZE)


def _place_marker(rng: np.random.Generator, actors: tuple[Actor, ...], height: int, width: int, gap: int):
    for _attempt in range(60):
        marker = int(rng.integers(0, height - MARKER_SIZE)), int(rng.integers(0, width - MARKER_SIZE))
        if all(rect_gap(marker_rect(marker), swept_rect(a)) >= gap for a in actors):
            return marker
    return None


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.uniform(30, 80, size=3)
    slope = rng.uniform(-15, 15, size=3)
    ramp = np.linspace(-1, 1, height)[:, None, None] * slope
    return np.broadcast_to(np.clip(base + ramp, 0, 255), (height, width, 3)).astype(np.uint8)


def sample_scene(rng: np.random.Generator, height: int, width: int, relation_gap: int) -> Scene:
    """A scene of MIN_ACTORS-MAX_ACTORS actors (and a marker with probability P_MARKER), all `relation_gap` px
    apart (gaps between rectangles swept over the scene)."""
    want_marker = rng.random() < P_MARKER
    for _attempt in range(MAX_SCENE_ATTEMPTS):
        actors = _place_actors(rng, int(rng.integers(MIN_ACTORS, MAX_ACTORS + 1)), height, width, relation_gap)
        if actors is None:
            continue
        marker = _place_marker(rng, actors, height, width, relation_gap) if want_marker else None
        if want_marker and marker is None:
            continue
        return Scene(actors, marker, _background(rng, height, width))
    raise ValueError(f"synthetic.height/width = {height}x{width}: no scene of {MIN_ACTORS}-{MAX_ACTORS} actors "
                     f"{relation_gap} px apart (synthetic.relation_gap) fits in {MAX_SCENE_ATTEMPTS} tries; use wider "
                     "frames or a smaller gap")


def scene_labels(scene: Scene) -> np.ndarray:
    """[n, NUM_CLASSES] float32 multi-hot labels of the scene's actors, in CLASSES order."""
    actors = scene.actors
    labels = np.zeros([len(actors), NUM_CLASSES], np.float32)
    for i, a in enumerate(actors):
        others = [b for j, b in enumerate(actors) if j != i]
        labels[i, a.pose] = 1
        labels[i, 3] = a.moving
        labels[i, 4] = a.colour == RED
        labels[i, 5] = a.hollow
        labels[i, 6] = any(b.pose == (a.pose + 1) % NUM_POSE_CLASSES for b in others)
        labels[i, 7] = scene.marker is not None
        labels[i, 8] = any(b.moving for b in others)
    return labels


def render(scene: Scene, dt: float) -> np.ndarray:
    """The scene `dt` frames from its keyframe: [H, W, 3] uint8."""
    frame = scene.background.copy()
    height, width = frame.shape[:2]
    if scene.marker is not None:
        top, left = scene.marker
        mid, t = MARKER_SIZE // 2, 1
        frame[top + mid - t:top + mid + t + 1, left:left + MARKER_SIZE] = MARKER_COLOUR
        frame[top:top + MARKER_SIZE, left + mid - t:left + mid + t + 1] = MARKER_COLOUR
    for a in scene.actors:
        r0, c0, r1, c1 = a.rect(dt)
        rs, cs = slice(max(r0, 0), min(r1, height)), slice(max(c0, 0), min(c1, width))
        background = frame[rs, cs].copy()
        frame[rs, cs] = COLOURS[a.colour]
        if a.hollow:
            k = HOLLOW_THICKNESS
            inner_r = slice(max(r0 + k, 0) - rs.start, max(min(r1 - k, height) - rs.start, 0))
            inner_c = slice(max(c0 + k, 0) - cs.start, max(min(c1 - k, width) - cs.start, 0))
            frame[rs, cs][inner_r, inner_c] = background[inner_r, inner_c]
    return frame


# --------------------------------------------------------------------------------------------- videos

def keyframe_frame(timestamp: int) -> int:
    """1-based frame number of a keyframe (AVA: frame 1 is second START_SECOND)."""
    return (timestamp - START_SECOND) * FPS + 1


def _box(actor: Actor, height: int, width: int) -> np.ndarray:
    r0, c0, r1, c1 = actor.rect(0.0)
    return np.array([c0 / width, r0 / height, c1 / width, r1 / height], np.float64)


def _proposals(rng: np.random.Generator, scene: Scene, height: int, width: int):
    """Detector-like boxes: jittered GT (a few at low score) plus false positives; yields (box, gt, score)."""
    return proposals_for_boxes(rng, [_box(a, height, width) for a in scene.actors])


def proposals_for_boxes(rng: np.random.Generator, gt_boxes: list[np.ndarray]):
    """Detector-like boxes for normalised GT boxes: each jittered (a few at low score), then 0-2 false positives;
    yields (box, index of the GT box or -1, score). Shared by the generators so their detections look alike."""
    for i, box in enumerate(gt_boxes):
        size = np.tile(box[2:] - box[:2], 2)
        jittered = np.clip(box + rng.normal(0, 0.03, 4) * size, 0, 1)
        score = rng.uniform(0.88, 1.0) if rng.random() > 0.1 else rng.uniform(0.5, 0.84)
        yield jittered, i, score
    for _ in range(int(rng.integers(0, 3))):
        w, h = rng.uniform(0.08, 0.2), rng.uniform(0.12, 0.3)
        x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        yield np.array([x1, y1, x1 + w, y1 + h]), -1, rng.uniform(0.3, 0.95)


def _fmt_box(box: np.ndarray) -> str:
    return ",".join(f"{v:.3f}" for v in box)


def write_video(frames_dir: str, video_id: str, rng: np.random.Generator, synth: ml_collections.ConfigDict, *,
                labelled_proposals: bool):
    """Writes one video's frames; returns (gt_rows, proposal_rows) as CSV lines.

    Proposal rows carry the matched actor's actions when `labelled_proposals` (training proposals, as LFB's
    do); otherwise, and for false positives, the action column is empty (a person box).
    """
    height, width, num_keyframes = int(synth.height), int(synth.width), int(synth.keyframes_per_video)
    scenes = [sample_scene(rng, height, width, int(synth.relation_gap)) for _ in range(num_keyframes)]
    video_dir = os.path.join(frames_dir, video_id)
    os.makedirs(video_dir)
    for frame in range(1, FPS * (num_keyframes + 1) + 1):
        j = min(max((frame + SCENE_HALF_SPAN - 1) // FPS - 1, 0), num_keyframes - 1)
        dt = frame - keyframe_frame(START_SECOND + 1 + j)
        Image.fromarray(render(scenes[j], dt)).save(
            os.path.join(video_dir, f"image_{frame:06d}.jpg"), quality=int(synth.jpeg_quality))
    gt_rows, proposal_rows = [], []
    for j, scene in enumerate(scenes):
        ts = START_SECOND + 1 + j
        labels = scene_labels(scene)
        for i, a in enumerate(scene.actors):
            box = _fmt_box(_box(a, height, width))
            for c in np.flatnonzero(labels[i]):
                gt_rows.append(f"{video_id},{ts:04d},{box},{CLASSES[c].id},{j * 10 + i}")
        for box, gt, score in _proposals(rng, scene, height, width):
            actions = [""]
            if labelled_proposals and gt >= 0:
                actions = [CLASSES[c].id for c in np.flatnonzero(labels[gt])]
            proposal_rows += [f"{video_id},{ts:04d},{_fmt_box(box)},{a},{score:.3f}" for a in actions]
    return gt_rows, proposal_rows


def label_map_text(classes: tuple[SyntheticClass, ...] = CLASSES) -> str:
    """The label map of `classes` (default: this set's) in the AVA .pbtxt format."""
    return "".join(f'item {{\n  name: "{c.name}"\n  id: {c.id}\n}}\n' for c in classes)


def _config_dict(synth: ml_collections.ConfigDict) -> dict:
    keys = ("seed", "num_train_videos", "num_val_videos", "keyframes_per_video", "height", "width",
            "relation_gap", "jpeg_quality")
    return {k: synth[k] for k in keys}


def write_dataset(out_dir: str, synth: ml_collections.ConfigDict) -> None:
    """Writes the whole dataset into the existing, empty directory `out_dir` (not atomic: see ensure_...)."""
    write_generated_set(out_dir, synth, write_video, prefix="synth", streams=(0, 1, 2),
                        label_map=(LABEL_MAP_FILE, label_map_text()), settings=_config_dict(synth))


def write_generated_set(out_dir: str, synth: ml_collections.ConfigDict, video_writer: Callable, *, prefix: str,
                        streams: tuple[int, int, int], label_map: tuple[str, str], settings: dict) -> None:
    """The files of a generated set: every video of both splits by `video_writer(frames_dir, video_id, rng,
    synth, labelled_proposals=...) -> (GT rows, proposal rows)` with the rng stream (seed, streams[split], v),
    the split CSVs, official-style exclusions (a few val keyframes, stream streams[2]), the label map
    (file name, text) and the settings file."""
    frames_dir = os.path.join(out_dir, "frames")
    splits = (("train", synth.num_train_videos, TRAIN_CSV, TRAIN_PROPOSALS_CSV, streams[0]),
              ("val", synth.num_val_videos, VAL_CSV, VAL_PROPOSALS_CSV, streams[1]))
    for split, count, csv, proposals_csv, stream in splits:
        gt_rows, proposal_rows = [], []
        for v in range(int(count)):
            rng = np.random.default_rng((int(synth.seed), stream, v))
            gt, props = video_writer(frames_dir, f"{prefix}_{split}_{v:03d}", rng, synth,
                                     labelled_proposals=split == "train")
            gt_rows += gt
            proposal_rows += props
        _write_lines(os.path.join(out_dir, csv), gt_rows)
        _write_lines(os.path.join(out_dir, proposals_csv), proposal_rows)
    rng = np.random.default_rng((int(synth.seed), streams[2]))   # the evaluator skips their GT and detections
    excluded = [f"{prefix}_val_{v:03d},{START_SECOND + 1 + int(rng.integers(synth.keyframes_per_video)):04d}"
                for v in range(0, int(synth.num_val_videos), 4)]
    _write_lines(os.path.join(out_dir, EXCLUSIONS_CSV), excluded)
    with open(os.path.join(out_dir, label_map[0]), "w") as f:
        f.write(label_map[1])
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(settings, f, indent=1, sort_keys=True)


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def ensure_synthetic_dataset(root: str, synth_config: ml_collections.ConfigDict) -> None:
    """Writes the dataset to `root` unless it is there; atomic (tmp dir + rename), so a half-written one is
    never used. A root written with different generator settings is an error naming both settings."""
    ensure_dataset_dir(root, _config_dict(synth_config), lambda out: write_dataset(out, synth_config))


def ensure_dataset_dir(root: str, settings: dict, write: Callable[[str], None]) -> None:
    """`write(tmp_dir)` fills a fresh directory that is renamed to `root` when whole; a `root` that exists must
    hold a CONFIG_FILE equal to `settings` (the generator's settings, written by `write`), else ValueError."""
    root = os.path.abspath(root)
    if os.path.exists(root):
        _check_existing(root, settings)
        return
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    try:
        write(tmp)
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(root):   # not a concurrent writer winning the rename: a real error
            raise
        _check_existing(root, settings)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_existing(root: str, wanted: dict) -> None:
    path = os.path.join(root, CONFIG_FILE)
    try:
        with open(path) as f:
            found = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{root} exists but is not a synthetic dataset ({CONFIG_FILE} missing); remove it "
                         "or point config.data.root elsewhere") from None
    if found != wanted:
        raise ValueError(f"{path}: the dataset was written with {found}, the config asks for {wanted}; "
                         f"remove {root} to regenerate it")
