"""AVA-format CSVs: write the official result CSV, and read AVA CSVs (results or GT) fast, in file order.

Result rows are `video_id,timestamp,x1,y1,x2,y2,action_id,score`, boxes normalised to the original frame, no
header (the official evaluator and the reference write and read it so). GT files have the same first seven
columns and a person id as the eighth.

Two readers, one per kind of file:
- `read_evaluator_csv`: GT or detections, what the official evaluator accepts (7 or 8 columns, any action
  id); the evaluator filters classes itself. Used by the frame-mAP (`ava_metric`).
- `read_result_csv`: strict, for result files we fuse or score: exactly 8 columns, action ids from the label
  map, finite scores. Used by the ensemble (`ensemble`).
Both parse with pyarrow's multi-threaded CSV reader (a dependency of tensorflow-datasets; its float parsing is
correctly rounded, so values equal Python's `float`). Anything it refuses goes through a line-by-line reader
that either parses it (a file mixing 7- and 8-column rows, `+902`) or raises a `ValueError` naming the file
and the 1-based line. Blank lines are skipped, as the dataset readers (data_pipelines/ava_files.py) skip them:
a trailing blank line is common in hand-made files, and a file with nothing but blank lines has no rows.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

RESULT_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score")


@dataclasses.dataclass(frozen=True)
class AvaRows:
    """The rows of one AVA CSV in file order; row i is line i + 1 of `path`.

    video_index [n] int64   index into `videos`
    videos      [V] object  distinct video ids (str)
    timestamp   [n] int64   keyframe second
    boxes       [n, 4] float64  x1, y1, x2, y2 as written (normalised, original frame)
    action_id   [n] int64
    score       [n] float64  eighth column (results: score; AVA GT: person id, which the official reader also
                             reads as a score and sorts by); 1.0 on 7-column rows, as the official reader
    lines       [n] int64 or None  1-based line of each row when blank lines moved them (None: row i + 1)
    """
    video_index: np.ndarray
    videos: np.ndarray
    timestamp: np.ndarray
    boxes: np.ndarray
    action_id: np.ndarray
    score: np.ndarray
    path: str = ""
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @property
    def video_id(self) -> np.ndarray:
        """[n] object: the video id of each row."""
        return self.videos[self.video_index]

    def where(self, row: int) -> str:
        """`path:line` of a row, for error messages."""
        line = row + 1 if self.lines is None else int(self.lines[row])
        return f"{self.path or '(in memory)'}:{line}"


def rows_from_arrays(video_id: Sequence[str], timestamp, boxes, action_id, score=None,
                     path: str = "", lines=None) -> AvaRows:
    """Builds `AvaRows` from per-row arrays (in-memory results; `score=None` means 7-column rows)."""
    video_id = np.asarray(video_id, dtype=object).reshape(-1)
    n = video_id.shape[0]
    videos, video_index = np.unique(video_id.astype(str), return_inverse=True)
    video_index = video_index.reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
    score = np.ones(n) if score is None else np.asarray(score, dtype=np.float64).reshape(n)
    return AvaRows(video_index.astype(np.int64), videos.astype(object),
                   np.asarray(timestamp, np.int64).reshape(n), boxes,
                   np.asarray(action_id, np.int64).reshape(n), score, path,
                   None if lines is None else np.asarray(lines, np.int64).reshape(n))


def read_evaluator_csv(path: str | os.PathLike) -> AvaRows:
    """Reads an AVA CSV with 7 or 8 columns per row (no header) as the official evaluator's reader does.

    Raises ValueError with `path:line` for a row with another column count, a non-integer timestamp or action
    id, an unparsable or non-finite number.
    """
    path = os.fspath(path)
    layout = _blank_line_layout(path)
    if layout == "empty":   # no detections at all is a valid result (the caller says so)
        return rows_from_arrays([], [], np.zeros((0, 4)), [], path=path)
    try:
        if layout == "inner":   # blank lines inside move the rows off their line numbers: read line by line
            raise ValueError("blank lines inside the file")
        rows = _read_fast(path)
    except Exception:  # pyarrow refused something: the line-by-line reader parses it or names the bad line
        rows = _read_slow(path, columns=(7, 8))
    _check_finite(rows)
    return rows


def read_result_csv(path: str | os.PathLike, class_ids: Iterable[int]) -> AvaRows:
    """Reads a result CSV strictly: 8 columns, action ids in `class_ids` (the label map), finite numbers.

    Raises ValueError naming the file and the 1-based line of the first bad row.
    """
    path = os.fspath(path)
    layout = _blank_line_layout(path)
    if layout == "empty":
        return rows_from_arrays([], [], np.zeros((0, 4)), [], [], path=path)
    try:
        if layout == "inner":
            raise ValueError("blank lines inside the file")
        rows = _read_fast(path, num_columns=8)
    except Exception:
        rows = _read_slow(path, columns=(8,))
    _check_finite(rows)
    known = np.asarray(sorted(set(int(c) for c in class_ids)), np.int64)
    unknown = np.flatnonzero(~np.isin(rows.action_id, known))
    if unknown.size:
        i = int(unknown[0])
        raise ValueError(f"{rows.where(i)}: action id {int(rows.action_id[i])} is not in the label map "
                         f"({known.size} classes, ids {known.min()}..{known.max()}); "
                         f"{unknown.size} row(s) have unknown action ids")
    return rows


def write_result_csv(path: str | os.PathLike, video_id: Sequence[str], timestamp, boxes, action_id, score, *,
                     box_decimals: int | None = 3, score_decimals: int | None = 3) -> None:
    """Writes the official result CSV, one row per (box, class), rows in the given order.

    video_id [n] str; timestamp [n] int; boxes [n, 4] x1y1x2y2 normalised to the original frame; action_id [n]
    label-map ids; score [n]. `*_decimals`: fixed decimals as the reference writes (3), or None for Python's
    shortest round-trip repr (the value read back is exactly the value written).
    """
    video_id = [str(v) for v in video_id]
    n = len(video_id)
    timestamp = np.asarray(timestamp).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64)
    action_id = np.asarray(action_id).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    for name, arr, shape in (("timestamp", timestamp, (n,)), ("boxes", boxes, (n, 4)),
                             ("action_id", action_id, (n,)), ("score", score, (n,))):
        if arr.shape != shape:
            raise ValueError(f"write_result_csv: {name} has shape {arr.shape}, expected {shape} "
                             f"(n = len(video_id))")
    if not (np.isfinite(boxes).all() and np.isfinite(score).all()):
        raise ValueError("write_result_csv: boxes and scores must be finite")
    if any("," in v or "\n" in v for v in video_id):
        raise ValueError("write_result_csv: a video id contains ',' or a newline")
    box_fmt = "%r" if box_decimals is None else f"%.{box_decimals}f"
    score_fmt = "%r" if score_decimals is None else f"%.{score_decimals}f"
    line = f"%s,%d,{box_fmt},{box_fmt},{box_fmt},{box_fmt},%d,{score_fmt}\n"
    with open(path, "w", newline="") as f:
        columns = (video_id, timestamp.astype(np.int64).tolist(), *boxes.T.tolist(),
                   action_id.astype(np.int64).tolist(), score.tolist())
        f.writelines(line % row for row in zip(*columns, strict=True))


def _blank_line_layout(path: str) -> str:
    """"empty" (nothing but whitespace), "inner" (a blank line before the last row) or "ok" (none, or only
    trailing ones, which leave every row on line i + 1). Names the file if it is not UTF-8 text."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text CSV (byte {e.start}: {e.reason})") from None
    body = data.rstrip()
    if not body:
        return "empty"
    body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if re.match(rb"[ \t]*\n", body) or re.search(rb"\n[ \t]*\n", body):   # C-speed on 1M-row files
        return "inner"
    return "ok"


def _read_fast(path: str, num_columns: int | None = None) -> AvaRows:
    """pyarrow reader: every row must have the column count of the first row (or `num_columns`)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if num_columns is None:
        with open(path, newline="") as f:
            first = next(csv.reader(io.StringIO(f.readline())), [])
        num_columns = len(first)
        if num_columns not in (7, 8):
            raise ValueError("first row has neither 7 nor 8 columns")
    names = [f"c{i}" for i in range(num_columns)]
    types = {"c0": pa.string(), "c1": pa.int64(), "c6": pa.int64()}
    types.update({f"c{i}": pa.float64() for i in (2, 3, 4, 5, 7)[:num_columns - 3]})
    table = pacsv.read_csv(
        path, read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(ignore_empty_lines=True),   # trailing ones only (_blank_line_layout)
        convert_options=pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                             quoted_strings_can_be_null=False))
    if table.num_rows == 0:
        raise ValueError("empty")
    videos = table.column("c0").combine_chunks().dictionary_encode()
    boxes = np.stack([table.column(f"c{i}").to_numpy() for i in (2, 3, 4, 5)], axis=1).astype(np.float64)
    score = table.column("c7").to_numpy() if num_columns == 8 else np.ones(table.num_rows)
    return AvaRows(videos.indices.to_numpy().astype(np.int64),
                   np.asarray(videos.dictionary.to_pylist(), object),
                   table.column("c1").to_numpy().astype(np.int64), boxes,
                   table.column("c6").to_numpy().astype(np.int64), np.asarray(score, np.float64), path)


def _read_slow(path: str, columns: tuple[int, ...]) -> AvaRows:
    """Line-by-line reader with the official reader's conversions (`int`, `float`); blank lines are skipped;
    errors name the line."""
    vids, ts, boxes, acts, scores, lines = [], [], [], [], [], []
    expected = " or ".join(str(c) for c in columns)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        previous_line = 0
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if reader.line_num != previous_line + 1:
                raise ValueError(f"{where}: a field spans several lines (quoted newline); AVA CSVs have one "
                                 f"row per line")
            previous_line = reader.line_num
            if all(not field.strip() for field in row):
                continue
            if len(row) not in columns:
                raise ValueError(f"{where}: expected {expected} columns "
                                 f"({','.join(RESULT_COLUMNS[:max(columns)])}), found {len(row)}: {row!r}")
            try:
                t = int(row[1])
            except ValueError:
                raise ValueError(f"{where}: timestamp must be an integer, found {row[1]!r}") from None
            try:
                box = [float(v) for v in row[2:6]]
            except ValueError:
                raise ValueError(f"{where}: box coordinates must be numbers, found {row[2:6]!r}") from None
            try:
                a = int(row[6])
            except ValueError:
                raise ValueError(f"{where}: action_id must be an integer, found {row[6]!r}") from None
            try:
                s = float(row[7]) if len(row) == 8 else 1.0
            except ValueError:
                raise ValueError(f"{where}: score (column 8) must be a number, found {row[7]!r}") from None
            vids.append(row[0])
            ts.append(t)
            boxes.append(box)
            acts.append(a)
            scores.append(s)
            lines.append(reader.line_num)
    return rows_from_arrays(vids, ts, boxes, acts, scores, path, lines)


def _check_finite(rows: AvaRows) -> None:
    """NaN or infinite boxes / scores break the official reader's heap order and the IoU: refuse them."""
    bad = ~(np.isfinite(rows.boxes).all(axis=1) & np.isfinite(rows.score))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        values = ", ".join(f"{v!r}" for v in [*rows.boxes[i].tolist(), float(rows.score[i])])
        raise ValueError(f"{rows.where(i)}: box coordinates and score must be finite numbers, found {values} "
                         f"(x1, y1, x2, y2, score); {int(bad.sum())} such row(s)")
