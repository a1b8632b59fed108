"""Strict readers for the official AVA files: label map (.pbtxt), box CSVs (GT and detections), exclusions.

Every error names the file and the 1-based line. A CSV with bad rows raises one `AvaFormatError` that lists
each bad row (and nothing else), so a user fixes them all at once and no good row is blamed. Files are read as
distributed: CRLF line endings, blank (trailing) lines, zero-padded timestamps ("0902") and video ids that begin
with "-" or "_" are all accepted.

Formats (as distributed by the AVA team and by PySlowFast / LFB for detections):
  GT:          video_id,timestamp,x1,y1,x2,y2,action_id,person_id     (one row per (box, action))
  Kinetics GT: youtube_id,timestamp,x1,y1,x2,y2,action_id             (AVA-Kinetics v1.0: no person_id;
               timestamp = second of the YouTube video; clips are `<youtube_id>_<start:06d>_<end:06d>.mp4`)
  detections:  video_id,timestamp,x1,y1,x2,y2,action_id,score         (action_id empty or -1 for a person box)
  exclusions:  video_id,timestamp
Rows of the same (video, timestamp, box) are merged into one box with multi-hot labels, as PySlowFast's
`parse_bboxes_file` merges rows on the box coordinates.

Action ids outside the label map (the 20 of AVA's 80 ids that the 60-class map omits) are skipped with one
counted `UnknownActionWarning` per file, in GT and in proposals alike: the LFB training proposals
(`person_box_67091280_iou90/ava_detection_train_boxes_and_labels_include_negative_v2.2.csv`) copy the full
80-id labels of the GT box they match. A GT box left without a known label is dropped; a proposal is kept as a
negative (all-zero labels), as is a proposal whose action is -1 or empty (a person, no action).

How proposals and GT combine for training (`load_keyframe_records(..., "train")`, docs/design.md "Training
boxes"): the GT boxes of `data.train_csv`, plus the proposals of `data.train_proposals` with score >=
`data.train_proposal_threshold`; a proposal with exactly a GT box's coordinates merges into that box (labels
unioned), as PySlowFast keys boxes on their coordinates. This is the reference's `ava_train_v2.2_with_fair_0.9`
set (GT + FAIR detections >= 0.9, detection-only boxes with person_id -1) and PySlowFast's AVA recipe (the GT
CSV and the include_negative file in one box list, detections >= DETECTION_SCORE_THRESH). `data.train_csv = ""`
trains on the proposals alone, with their labels.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
import warnings
from collections.abc import Iterator

import numpy as np

from data_pipelines.frame_index import ava_keyframe_number, count_frames, probe_video
from data_pipelines.records import FrameSource, KeyframeRecord

# Box coordinates may exceed [0, 1] by this much (rounding in the official files) and are then clamped;
# anything further out is an error.
BOX_TOLERANCE = 1e-3
SYNTHETIC_DATASETS = ("synthetic", "synthetic_longterm")   # generated in AVA format (data_pipelines/synthetic*.py)
NUM_CSV_COLUMNS = 8
_MAX_LISTED_ERRORS = 20


class AvaFormatError(ValueError):
    """A file does not follow the official AVA format; the message names the file and line(s)."""


class UnknownActionWarning(UserWarning):
    """Rows whose action id is not in the label map were skipped (e.g. the 20 the 60-class map omits)."""


class MissingDataError(FileNotFoundError):
    """A file or folder a `config.data.*` field points at does not exist; the message names the field."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Class ids in file order (not contiguous in AVA) and their names; index_of maps an id to its column."""
    ids: tuple[int, ...]
    names: tuple[str, ...]
    path: str = ""
    _index: dict = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(self.ids) != len(self.names):
            raise ValueError(f"{self.path}: {len(self.ids)} ids but {len(self.names)} names")
        object.__setattr__(self, "_index", {action_id: i for i, action_id in enumerate(self.ids)})

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    def __contains__(self, action_id: int) -> bool:
        return action_id in self._index

    def index_of(self, action_id: int) -> int:
        """Column of `action_id` in the multi-hot label vector; KeyError naming the id and the map's file."""
        try:
            return self._index[action_id]
        except KeyError:
            raise KeyError(f"action id {action_id} is not in the label map {self.path or '(in memory)'} "
                           f"(ids {min(self.ids)}..{max(self.ids)}, {self.num_classes} classes)") from None


_PBTXT_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}:])|([^\s{}:"#]+))')


def _pbtxt_tokens(text: str, path: str):
    """Yields (token, kind, line) for the protobuf text format subset the label maps use."""
    pos, line = 0, 1
    while pos < len(text):
        m = _PBTXT_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                return
            raise AvaFormatError(f"{path}:{line}: cannot parse label map text near {text[pos:pos + 20]!r}")
        line += text.count("\n", pos, m.start(m.lastindex))
        comment, string, punct, word = m.groups()
        if string is not None:
            yield bytes(string[1:-1], "utf-8").decode("unicode_escape"), "string", line
        elif punct is not None:
            yield punct, "punct", line
        elif word is not None:
            yield word, "word", line
        line += text.count("\n", m.start(m.lastindex), m.end())
        pos = m.end()


def read_label_map(path: str) -> LabelMap:
    """Parses an AVA label map: `item { name: "..." id: N }` (60-class file) or `label { name: "..."
    label_id: N label_type: T }` (80-class full list). Returns the classes in file order."""
    with open(path) as f:
        text = f.read()
    ids, names, seen = [], [], {}
    tokens = list(_pbtxt_tokens(text, path))
    i = 0
    while i < len(tokens):
        tok, kind, line = tokens[i]
        if kind != "word" or i + 1 >= len(tokens) or tokens[i + 1][0] != "{":
            raise AvaFormatError(f"{path}:{line}: expected 'item {{' or 'label {{', found {tok!r}")
        block_line, fields = line, {}
        i += 2
        while True:
            if i >= len(tokens):
                raise AvaFormatError(f"{path}:{block_line}: block opened here is never closed")
            tok, kind, line = tokens[i]
            if tok == "}" and kind == "punct":
                i += 1
                break
            if kind != "word" or i + 2 >= len(tokens) or tokens[i + 1][0] != ":":
                raise AvaFormatError(f"{path}:{line}: expected 'key: value' inside the block, found {tok!r}")
            fields[tok] = (tokens[i + 2][0], tokens[i + 2][1], tokens[i + 2][2])
            i += 3
        name = fields.get("name") or fields.get("display_name")
        id_field = fields.get("id") or fields.get("label_id")
        if name is None or id_field is None:
            raise AvaFormatError(f"{path}:{block_line}: block needs a name and an id (or label_id), "
                                 f"found keys {sorted(fields)}")
        try:
            action_id = int(id_field[0])
        except ValueError:
            raise AvaFormatError(f"{path}:{id_field[2]}: id must be an integer, "
                                 f"found {id_field[0]!r}") from None
        if action_id in seen:
            raise AvaFormatError(f"{path}:{id_field[2]}: id {action_id} repeats the id at line "
                                 f"{seen[action_id]}")
        seen[action_id] = id_field[2]
        ids.append(action_id)
        names.append(name[0])
    if not ids:
        raise AvaFormatError(f"{path}: no classes found in the label map")
    return LabelMap(tuple(ids), tuple(names), path)


@dataclasses.dataclass(frozen=True)
class AvaBox:
    """One box of one keyframe with all its labels, merged from the CSV rows that share its coordinates."""
    video_id: str
    timestamp: int
    box: tuple[float, float, float, float]   # normalised x1, y1, x2, y2 (clamped to [0, 1])
    labels: np.ndarray                       # [K] float32 multi-hot over the label map's classes
    score: float                             # 1.0 for GT, the detector's score for detections
    person_id: int                           # -1 for detections
    line: int                                # 1-based line of the box's first row
    path: str                                # the CSV it came from


def _parse_box(fields: list[str]) -> tuple[tuple[float, float, float, float] | None, str]:
    """Returns (box, "") or (None, reason)."""
    try:
        x1, y1, x2, y2 = (float(v) for v in fields)
    except ValueError:
        return None, f"box coordinates must be numbers, found {fields}"
    coords = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in coords):
        return None, f"box coordinates must be finite, found {fields}"
    if any(v < -BOX_TOLERANCE or v > 1 + BOX_TOLERANCE for v in coords):
        return None, f"box {fields} lies outside [0, 1] by more than the rounding tolerance {BOX_TOLERANCE}"
    if x1 > x2 or y1 > y2:
        return None, f"box {fields} has x1 > x2 or y1 > y2 (expected x1,y1,x2,y2 with x1 <= x2, y1 <= y2)"
    return tuple(min(max(v, 0.0), 1.0) for v in coords), ""


def _csv_rows(path: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, stripped row, stripped comma-separated fields) of every non-blank line of a CSV file."""
    with open(path, newline="") as f:
        for line_no, raw in enumerate(f, start=1):
            row = raw.strip()
            if row:
                yield line_no, row, [v.strip() for v in row.split(",")]


def read_box_annotations(path: str, label_map: LabelMap, *, with_scores: bool = False,
                 person_id_optional: bool = False) -> list[AvaBox]:
    """Reads a GT CSV (`with_scores=False`) or a detections CSV (`with_scores=True`) into merged boxes.

    `person_id_optional`: GT rows may also have 7 columns, without person_id (-1): the AVA-Kinetics
    `kinetics_{train,val}_v1.0.csv` rows are `youtube_id,timestamp,x1,y1,x2,y2,action_id`.

    Rows whose action id is not in the label map are skipped with one counted `UnknownActionWarning`. A GT
    box left with no known label is dropped (and counted); a detection box is kept with all-zero labels (a
    person doing none of the map's actions: a negative), like a detection row whose action is empty or -1.
    Order: the order of first appearance in the file.
    """
    errors: list[str] = []
    skipped_lines: list[int] = []
    skipped_ids: set[int] = set()
    merged: dict[tuple, dict] = collections.OrderedDict()
    for line_no, row, fields in _csv_rows(path):
        where = f"{path}:{line_no}"
        if person_id_optional and not with_scores and len(fields) == NUM_CSV_COLUMNS - 1:
            fields.append("-1")
        if len(fields) != NUM_CSV_COLUMNS:
            last = "score" if with_scores else "person_id"
            errors.append(f"{where}: expected {NUM_CSV_COLUMNS} columns (video_id,timestamp,x1,y1,x2,y2,"
                          f"action_id,{last}), found {len(fields)}: {row!r}")
            continue
        video_id = fields[0]
        if not video_id:
            errors.append(f"{where}: empty video_id")
            continue
        try:
            timestamp = int(fields[1])
        except ValueError:
            errors.append(f"{where}: timestamp must be an integer number of seconds, found {fields[1]!r}")
            continue
        box, reason = _parse_box(fields[2:6])
        if box is None:
            errors.append(f"{where}: {reason}")
            continue
        action_field = fields[6]
        if with_scores:
            try:
                score = float(fields[7])
            except ValueError:
                score = float("nan")
            if not math.isfinite(score):
                errors.append(f"{where}: score must be a finite number, found {fields[7]!r}")
                continue
            person_id = -1
        else:
            score = 1.0
            try:
                person_id = int(fields[7])
            except ValueError:
                errors.append(f"{where}: person_id must be an integer, found {fields[7]!r}")
                continue
        if with_scores and action_field in ("", "-1"):
            action_id = None            # a person box without action labels
        else:
            try:
                action_id = int(action_field)
            except ValueError:
                errors.append(f"{where}: action_id must be an integer, found {action_field!r}")
                continue
            if action_id not in label_map:
                skipped_lines.append(line_no)
                skipped_ids.add(action_id)
                # a row of an unknown class still declares its box: keep the box, without this label
        key = (video_id, timestamp, box)
        entry = merged.get(key)
        if entry is None:
            entry = merged[key] = {"labels": set(), "score": score, "person_id": person_id,
                                   "line": line_no, "unknown": False}
        if action_id is not None and action_id in label_map:
            entry["labels"].add(label_map.index_of(action_id))
        elif action_id is not None:
            entry["unknown"] = True
    if errors:
        raise AvaFormatError(_bad_rows_message(path, errors))

    boxes, unlabelled = [], 0
    for (video_id, timestamp, box), entry in merged.items():
        if not entry["labels"] and entry["unknown"]:
            unlabelled += 1       # every label of this box is outside the label map
            if not with_scores:
                continue          # a GT box: dropped
        labels = np.zeros([label_map.num_classes], np.float32)
        labels[sorted(entry["labels"])] = 1.0
        boxes.append(AvaBox(video_id, timestamp, box, labels, entry["score"], entry["person_id"],
                            entry["line"], path))
    if skipped_lines:
        warnings.warn(
            f"{path}: skipped {len(skipped_lines)} row(s) with action ids not in the label map "
            f"{label_map.path} (ids {sorted(skipped_ids)}; lines {skipped_lines[:10]}"
            f"{' ...' if len(skipped_lines) > 10 else ''}); "
            f"{unlabelled} box(es) had no other label and "
            f"{'were kept as negatives (all-zero labels)' if with_scores else 'were dropped'}",
            UnknownActionWarning, stacklevel=2)
    return boxes


def _bad_rows_message(path: str, errors: list[str]) -> str:
    listed = "\n  ".join(errors[:_MAX_LISTED_ERRORS])
    more = f"\n  ... and {len(errors) - _MAX_LISTED_ERRORS} more" if len(errors) > _MAX_LISTED_ERRORS else ""
    return f"{path}: {len(errors)} bad row(s):\n  {listed}{more}"


def read_exclusions(path: str) -> set[tuple[str, int]]:
    """Reads the excluded-timestamps CSV (`video_id,timestamp` rows) into a set of (video_id, timestamp)."""
    excluded, errors = set(), []
    for line_no, row, fields in _csv_rows(path):
        if len(fields) != 2 or not fields[0]:
            errors.append(f"{path}:{line_no}: expected 2 columns (video_id,timestamp), found {row!r}")
            continue
        try:
            excluded.add((fields[0], int(fields[1])))
        except ValueError:
            errors.append(f"{path}:{line_no}: timestamp must be an integer, found {fields[1]!r}")
    if errors:
        raise AvaFormatError(_bad_rows_message(path, errors))
    return excluded


# ----------------------------------------------------------------------------------------------------
# Keyframe records: the files of one split, grouped per (video, timestamp), with their frame source.
# ----------------------------------------------------------------------------------------------------

KINETICS_VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")


def resolve_path(root: str, name: str) -> str:
    """`name` if absolute, else `root/name` (config.data.* file fields are relative to config.data.root)."""
    return name if os.path.isabs(name) else os.path.join(root, name)


def _select_proposals(boxes: list[AvaBox], threshold: float) -> list[AvaBox]:
    """Keeps detections with score >= threshold (PySlowFast's `parse_bboxes_file` drops score < threshold)."""
    return [b for b in boxes if b.score >= threshold]


def merge_gt_and_proposals(gt: list[AvaBox], proposals: list[AvaBox]) -> list[AvaBox]:
    """GT boxes, then the proposals; a proposal with exactly a GT box's (video, second, coordinates) merges
    into it (labels unioned, the GT's score and person_id kept), as PySlowFast's coordinate-keyed merge."""
    out: dict[tuple, AvaBox] = {}
    for b in gt + proposals:
        key = (b.video_id, b.timestamp, b.box)
        first = out.get(key)
        if first is None:
            out[key] = b
        else:
            out[key] = dataclasses.replace(first, labels=np.maximum(first.labels, b.labels))
    return list(out.values())


def _group(boxes: list[AvaBox]) -> dict[tuple[str, int], list[AvaBox]]:
    groups: dict[tuple[str, int], list[AvaBox]] = collections.defaultdict(list)
    for b in boxes:
        groups[(b.video_id, b.timestamp)].append(b)
    return groups


def _record(key: tuple[str, int], boxes: list[AvaBox], source: FrameSource,
            num_classes: int) -> KeyframeRecord:
    return KeyframeRecord(
        video_id=key[0], timestamp=key[1],
        boxes=np.asarray([b.box for b in boxes], np.float32).reshape(-1, 4),
        labels=np.asarray([b.labels for b in boxes], np.float32).reshape(-1, num_classes),
        scores=np.asarray([b.score for b in boxes], np.float32),
        person_ids=np.asarray([b.person_id for b in boxes], np.int32),
        source=source)


def records_from_boxes(boxes: list[AvaBox], frames_root: str, start_second: int, fps: int,
                       num_classes: int) -> list[KeyframeRecord]:
    """Keyframe records of AVA-style frame folders `frames_root/<video_id>/` for boxes read with
    read_box_annotations, sorted by (video_id, timestamp); errors name the CSV line of a keyframe outside its
    video (the video demo builds its records with this)."""
    groups = _group(boxes)
    sources = _ava_sources(groups, frames_root, start_second, fps)
    return [_record(key, groups[key], sources[key], num_classes) for key in sorted(groups)]


def _ava_sources(groups, frames_root: str, start_second: int, fps: int) -> dict[tuple[str, int], FrameSource]:
    """Frame folder and keyframe number per keyframe; errors name the CSV, line, video and frames found."""
    counts: dict[str, int] = {}
    sources = {}
    for key, boxes in groups.items():
        video_id, timestamp = key
        first = min(boxes, key=lambda b: b.line)
        frames_dir = os.path.join(frames_root, video_id)
        if video_id not in counts:
            if not os.path.isdir(frames_dir):
                raise FileNotFoundError(f"{first.path}:{first.line}: frame folder {frames_dir} of video "
                                        f"{video_id!r} does not exist (tools/extract_frames.py writes it)")
            counts[video_id] = count_frames(frames_dir)
        n = counts[video_id]
        k = ava_keyframe_number(timestamp, start_second, fps)
        if not 1 <= k <= n:
            raise ValueError(f"{first.path}:{first.line}: timestamp {timestamp} of video {video_id!r} is "
                             f"outside the video: its keyframe would be frame {k}, but {frames_dir} has "
                             f"{n} frames (frame 1 = second {start_second}, {fps} fps)")
        sources[key] = FrameSource(frames_dir=frames_dir, keyframe_index=k, num_frames=n)
    return sources


def _kinetics_clips(videos_dir: str) -> dict[str, list[tuple[str, int, int]]]:
    """youtube_id -> [(path, start, end)] from clip files named `<youtube_id>_<start:06d>_<end:06d>.mp4`."""
    if not os.path.isdir(videos_dir):
        raise FileNotFoundError(f"Kinetics videos folder {videos_dir} (data.kinetics_videos_dir) "
                                "does not exist")
    clips = collections.defaultdict(list)
    for name in sorted(os.listdir(videos_dir)):
        stem, ext = os.path.splitext(name)
        parts = stem.rsplit("_", 2)   # YouTube ids may contain '_': split from the right
        if ext not in KINETICS_VIDEO_EXTENSIONS or len(parts) != 3 or not (parts[1] + parts[2]).isdigit():
            continue
        clips[parts[0]].append((os.path.join(videos_dir, name), int(parts[1]), int(parts[2])))
    return clips


def _kinetics_source(path: str, start: int, timestamp: int, frames_root: str, fps: int) -> FrameSource | str:
    """The frame source of second `timestamp` of a clip starting at `start`, or why it has none: the clip's
    frame folder if extracted (`<frames>/<clip stem>`, at `fps`), else the video file itself."""
    frames_dir = os.path.join(frames_root, os.path.splitext(os.path.basename(path))[0])
    if os.path.isdir(frames_dir):
        n, rate, first = count_frames(frames_dir), fps, 1
    else:
        (n, rate), first, frames_dir = probe_video(path), 0, ""
    k = round((timestamp - start) * rate)
    if k > n:      # k == n: a keyframe on the clip's last second boundary takes its last frame
        return f"its keyframe would be frame {k + first} but the clip has {n} frames ({rate:g} fps)"
    k = min(k, n - 1) + first
    if frames_dir:
        return FrameSource(frames_dir=frames_dir, keyframe_index=k, num_frames=n)
    return FrameSource(video_path=path, keyframe_index=k, num_frames=n)


def _kinetics_sources(groups, videos_dir: str, frames_root: str, fps: int,
                      skip_missing: bool) -> dict[tuple[str, int], FrameSource]:
    """Frame source per Kinetics keyframe: the clip `<id>_<start>_<end>` whose seconds hold the timestamp
    (the CSV's timestamps are seconds of the YouTube video). Missing or too short clips are errors naming
    the CSV line, or with `skip_missing` skipped with one counted warning (downloads of Kinetics are never
    complete)."""
    clips = _kinetics_clips(videos_dir)
    sources, skipped = {}, []
    for key, boxes in groups.items():
        video_id, timestamp = key
        first = min(boxes, key=lambda b: b.line)
        where = f"{first.path}:{first.line}: timestamp {timestamp} of video {video_id!r}"
        candidates = [c for c in clips.get(video_id, []) if c[1] <= timestamp <= c[2]]
        if not candidates:
            found = [os.path.basename(c[0]) for c in clips.get(video_id, [])]
            problem = (f"{where} is outside its clip(s) {found}" if found else
                       f"{where}: no clip {video_id}_<start>_<end>.mp4 in {videos_dir}")
        else:
            path, start, _ = candidates[0]
            source = _kinetics_source(path, start, timestamp, frames_root, fps)
            if isinstance(source, FrameSource):
                sources[key] = source
                continue
            problem = f"{where} is outside the video {path}: {source}"
        if not skip_missing:
            raise (FileNotFoundError if video_id not in clips else ValueError)(problem)
        skipped.append(problem)
    if skipped:
        warnings.warn(f"{videos_dir}: skipped {len(skipped)} Kinetics keyframe(s) without a usable clip; "
                      f"first: {skipped[0]}", stacklevel=3)
    return sources


def _data_fields(data_config, split: str, scoring: bool) -> list[tuple[str, bool]]:
    """(config.data field, is a folder) of every path `split` reads; the val GT only when it is scored or gives
    the boxes (detections alone make the val records, e.g. for a feature bank of a set without GT)."""
    fields = [("label_map", False), ("frames_dir", True)]
    if split == "train":
        fields += [("train_csv", False), ("train_proposals", False)]
    else:
        if scoring or not data_config.val_proposals:
            fields.append(("val_csv", False))
        fields += [("val_proposals", False), ("exclusions", False)]
    if data_config.dataset == "ava_kinetics":
        fields += [("kinetics_videos_dir", True), (f"kinetics_{split}_csv", False)]
        if split == "val":
            fields.append(("kinetics_val_proposals", False))
    return [(name, folder) for name, folder in fields if data_config[name]]


def check_data_files(data_config, splits=("train", "val"), *, scoring: bool = True) -> None:
    """Raises MissingDataError naming the `config.data.*` field of the first file or folder of `splits` that
    does not exist, so that a run stops before step 0 (not after training, at the first eval). `scoring`: the
    val split will be scored, so its GT CSV must exist even when detections give the boxes."""
    if data_config.dataset in SYNTHETIC_DATASETS:      # generated by the run itself when absent
        return
    root = data_config.root
    if not os.path.isdir(root):
        raise MissingDataError(f"config.data.root: the dataset root {root!r} does not exist (working directory "
                               f"{os.getcwd()}); point --config.data.root at the folder holding the AVA files")
    for split in splits:
        for name, folder in _data_fields(data_config, split, scoring):
            path = resolve_path(root, data_config[name])
            if not (os.path.isdir(path) if folder else os.path.isfile(path)):
                kind = "folder" if folder else "file"
                raise MissingDataError(f"config.data.{name}: no such {kind} {path} (config.data.{name}="
                                       f"{data_config[name]!r}, relative to config.data.root={root!r})")


def load_keyframe_records(data_config, split: str, *, skip_missing_kinetics: bool = False
                          ) -> list[KeyframeRecord]:
    """All keyframes of a split with their boxes, labels and frame source, sorted by (video_id, timestamp).

    train: GT boxes, plus the training proposals with score >= `train_proposal_threshold` as extra boxes with
           their labels as given (the reference's `ava_train_v2.2_with_fair_0.9` set; the module docstring
           states the rule).
    val:   proposals with score >= `val_proposal_threshold` (GT when `val_proposals` is ""), excluded
           keyframes dropped. AVA-Kinetics adds the Kinetics keyframes of `kinetics_{train,val}_csv` (GT;
           at val the `kinetics_val_proposals` above `kinetics_val_proposal_threshold` when given).
    `data_config` is config.data of configs/default.py; file names are relative to `data_config.root`.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if data_config.dataset not in (*SYNTHETIC_DATASETS, "ava", "ava_kinetics"):
        raise ValueError(f"data.dataset must be one of {(*SYNTHETIC_DATASETS, 'ava', 'ava_kinetics')}, "
                         f"got {data_config.dataset!r}")
    check_data_files(data_config, (split,), scoring=False)
    root = data_config.root
    label_map = read_label_map(resolve_path(root, data_config.label_map))
    if split == "train":
        boxes = (read_box_annotations(resolve_path(root, data_config.train_csv), label_map)
                 if data_config.train_csv else [])
        if data_config.train_proposals:
            proposals = read_box_annotations(resolve_path(root, data_config.train_proposals), label_map,
                                             with_scores=True)
            boxes = merge_gt_and_proposals(boxes, _select_proposals(proposals,
                                                                    data_config.train_proposal_threshold))
    elif data_config.val_proposals:
        proposals = read_box_annotations(resolve_path(root, data_config.val_proposals), label_map, with_scores=True)
        boxes = _select_proposals(proposals, data_config.val_proposal_threshold)
    else:
        boxes = read_box_annotations(resolve_path(root, data_config.val_csv), label_map)
    groups = _group(boxes)
    if split == "val" and data_config.exclusions:
        excluded = read_exclusions(resolve_path(root, data_config.exclusions))
        groups = {k: v for k, v in groups.items() if k not in excluded}
    frames_root = resolve_path(root, data_config.frames_dir)
    sources = _ava_sources(groups, frames_root, data_config.start_second, data_config.fps)

    if data_config.dataset == "ava_kinetics":
        csv_name = data_config.kinetics_train_csv if split == "train" else data_config.kinetics_val_csv
        if not csv_name or not data_config.kinetics_videos_dir:
            raise ValueError(f"data.dataset 'ava_kinetics' needs data.kinetics_{split}_csv and "
                             f"data.kinetics_videos_dir")
        if split == "val" and data_config.kinetics_val_proposals:
            proposals = read_box_annotations(resolve_path(root, data_config.kinetics_val_proposals), label_map,
                                     with_scores=True)
            kinetics = _group(_select_proposals(proposals, data_config.kinetics_val_proposal_threshold))
        else:
            kinetics = _group(read_box_annotations(resolve_path(root, csv_name), label_map, person_id_optional=True))
        overlap = sorted(set(kinetics) & set(groups))
        if overlap:
            raise ValueError(f"{csv_name}: keyframes {overlap[:3]} also appear in the AVA files")
        kinetics_sources = _kinetics_sources(kinetics, resolve_path(root, data_config.kinetics_videos_dir),
                                             frames_root, data_config.fps, skip_missing_kinetics)
        groups.update({k: kinetics[k] for k in kinetics_sources})
        sources.update(kinetics_sources)

    return [_record(key, groups[key], sources[key], label_map.num_classes) for key in sorted(groups)]
