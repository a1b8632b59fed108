"""AVA frame-mAP@0.5 IoU, equal to the official ActivityNet evaluator, vectorised with numpy.

The official one (ActivityNet `get_ava_performance.py` of 2019, copied by ACAR-Net as `calc_mAP.py` and by
PySlowFast) loops over keyframes and classes in Python. This module computes the same numbers, ties included:

1. Reading (`read_csv`): rows whose action id is not in the label map are dropped first; keyframes are
   taken in order of their first kept row. Each keyframe's rows go through a heap of (score, action_id,
   y1, x1, y2, x2) tuples: GT without limit, detections capped at 50 (a full heap's smallest tuple is
   replaced only by a row of strictly higher score). The heap's internal list is then sorted by descending
   score with a stable sort, so among equal scores the heap's layout decides the order. The capped set has
   a closed form (see `_capped_set`); the layout only matters between rows of one keyframe with the same
   score and class, and only for those keyframes is the heap replayed with `heapq` (on integer ranks).
2. Keyframes listed in the exclusions file are dropped (GT and detections). GT counts per class come from
   every remaining GT row.
3. Per keyframe, detections with y1 >= y2 or x1 >= x2 are dropped (after the cap). Per class, detections are
   matched greedily in keyframe order: each takes the GT box of its class with the highest IoU (the first one
   on ties, `np.argmax`); IoU >= 0.5 on a not yet matched box is a true positive, anything else a false
   positive. The IoU uses the official expression term by term, so it is bit-equal.
4. Per class, the scores and labels of all keyframes are concatenated in keyframe order, ordered by
   `np.argsort(scores)[::-1]` (the same call on the same array, hence the same order among ties), and scored
   with VOC AP (precision made monotone from the right, summed over recall steps). A class without GT has AP
   NaN; one with GT and no detection 0. mAP is `np.nanmean` over ids 1..max id of the label map.

CLI with the official flags: `python -m acar_jax.evaluation.ava_metric -l LABELMAP -g GT_CSV -d DETECTIONS_CSV
[-e EXCLUSIONS_CSV]`; the last line printed is `mAP@0.5IOU: <value>` with the value's full repr.
Stricter than the official code (it would crash or silently misbehave): non-finite numbers, GT boxes with
x1 > x2 or y1 > y2, and label-map ids below 1 raise a ValueError naming the file (and line); the CLI prints
it as one line `error: ...` (no traceback) and exits with status 1. Like the official code it drops detection
rows whose action id is not in the label map, but says how many (an `EvaluationWarning`), and it warns when
there is no detection at all (mAP 0). Blank lines are skipped (result_csv).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from acar_jax.evaluation.result_csv import AvaRows, read_evaluator_csv
from data_pipelines.ava_files import read_exclusions, read_label_map

DEFAULT_LABEL_MAP = Path(__file__).resolve().parents[1] / "data/ava_action_list_v2.2_for_activitynet_2019.pbtxt"
DETECTIONS_PER_KEYFRAME = 50   # the official reader's heap capacity for detections
IOU_THRESHOLD = 0.5


class EvaluationWarning(UserWarning):
    """The input is valid but probably not what was meant: dropped detection rows, no detections at all."""


@dataclasses.dataclass(frozen=True)
class FrameMapResult:
    """Per-class AP (label-map ids in file order; NaN for a class without GT) and their nanmean."""
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    ap: np.ndarray              # [C] float64, aligned with class_ids
    num_gt: np.ndarray          # [C] int64 GT rows per class after exclusions
    mean_ap: float

    def ap_by_id(self) -> dict[int, float]:
        return dict(zip(self.class_ids, self.ap.tolist(), strict=True))


def evaluate_frame_map(label_map: str | os.PathLike, groundtruth: str | os.PathLike | AvaRows,
             detections: str | os.PathLike | AvaRows, exclusions: str | os.PathLike | None = None
             ) -> FrameMapResult:
    """Frame-mAP@0.5 of `detections` against `groundtruth`, as the official `run_evaluation` computes it.

    groundtruth / detections: AVA CSV paths or `AvaRows` (rows in file order, which matters for ties).
    """
    lm = read_label_map(os.fspath(label_map))
    class_ids = tuple(int(c) for c in lm.ids)
    if not class_ids:
        raise ValueError(f"{label_map}: the label map has no classes")
    if min(class_ids) < 1:
        raise ValueError(f"{label_map}: class ids must be >= 1 (the official evaluator is 1-indexed), "
                         f"found {min(class_ids)}")
    excluded = read_exclusions(os.fspath(exclusions)) if exclusions else set()
    gt = groundtruth if isinstance(groundtruth, AvaRows) else read_evaluator_csv(groundtruth)
    det = detections if isinstance(detections, AvaRows) else read_evaluator_csv(detections)
    _warn_about_detections(det, class_ids, os.fspath(label_map))
    ap, num_gt, mean_ap = frame_map(gt, det, class_ids, excluded)
    return FrameMapResult(class_ids, tuple(lm.names), ap, num_gt, mean_ap)


def _warn_about_detections(det: AvaRows, class_ids: tuple[int, ...], label_map: str) -> None:
    """Counted warnings for what the official evaluator silently accepts: no detections, unknown class ids."""
    name = det.path or "detections"
    if len(det) == 0:
        warnings.warn(f"{name}: no detections (empty file); every class with GT scores AP 0, so mAP is 0",
                      EvaluationWarning, stacklevel=3)
        return
    unknown = ~np.isin(det.action_id, np.asarray(class_ids))
    if unknown.any():
        ids = np.unique(det.action_id[unknown])
        shown = ", ".join(str(int(i)) for i in ids[:10]) + (", ..." if ids.size > 10 else "")
        warnings.warn(f"{name}: dropped {int(unknown.sum())} of {len(det)} detection rows whose action id is not "
                      f"in the label map {label_map} ({ids.size} such ids: {shown}), as the official evaluator "
                      f"does", EvaluationWarning, stacklevel=3)


def frame_map(gt: AvaRows, det: AvaRows, class_ids: tuple[int, ...], excluded: set[tuple[str, int]]
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """(AP per class id in `class_ids` order, GT count per class, mAP) for rows already read."""
    max_id = max(class_ids)
    g = _Keyframes.build(gt, class_ids, excluded, capacity=0)
    d = _Keyframes.build(det, class_ids, excluded, capacity=DETECTIONS_PER_KEYFRAME)
    bad = np.flatnonzero((g.boxes[:, 0] > g.boxes[:, 2]) | (g.boxes[:, 1] > g.boxes[:, 3]))
    if bad.size:
        i = int(g.rows[bad[0]])
        raise ValueError(f"{gt.where(i)}: GT box has x1 > x2 or y1 > y2: {gt.boxes[i].tolist()} "
                         f"(x1, y1, x2, y2)")
    # Detections of the same keyframe name: map them onto GT keyframe indices (-1: no GT there).
    det_gt_image = _match_keys(d.keys, g.keys)[d.image]
    valid = (d.boxes[:, 0] < d.boxes[:, 2]) & (d.boxes[:, 1] < d.boxes[:, 3])   # official: y1<y2 and x1<x2
    is_tp = _match(det_gt_image[valid], d.action[valid], d.boxes[valid], g, max_id)
    num_gt = np.bincount(g.action, minlength=max_id + 1)
    ap_all = np.full(max_id, np.nan)
    scores, actions = d.score[valid], d.action[valid]
    order = np.argsort(actions, kind="stable")   # per class, keyframe order and in-keyframe order kept
    bounds = np.searchsorted(actions[order], np.arange(max_id + 2))
    for c in range(1, max_id + 1):
        if num_gt[c] == 0:
            continue
        idx = order[bounds[c]:bounds[c + 1]]
        ap_all[c - 1] = _voc_ap(scores[idx], is_tp[idx], num_gt[c])
    with warnings.catch_warnings():   # every class without GT: NaN, as the official
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_ap = float(np.nanmean(ap_all))
    ap = np.array([ap_all[c - 1] for c in class_ids])
    return ap, np.array([num_gt[c] for c in class_ids], np.int64), mean_ap


@dataclasses.dataclass(frozen=True)
class _Keyframes:
    """The rows the official reader keeps, in the order it emits them (keyframe by keyframe).

    keys [K] (video_id, timestamp) in first-appearance order; image [m] keyframe of each kept row; rows [m]
    index into the source AvaRows; boxes [m, 4] y1, x1, y2, x2 (the official evaluator's order).
    """
    keys: list[tuple[str, int]]
    image: np.ndarray
    rows: np.ndarray
    score: np.ndarray
    action: np.ndarray
    boxes: np.ndarray

    @staticmethod
    def build(rows: AvaRows, class_ids: tuple[int, ...], excluded: set[tuple[str, int]],
              capacity: int) -> _Keyframes:
        keep = np.flatnonzero(np.isin(rows.action_id, np.asarray(class_ids)))
        vid, ts = rows.video_index[keep], rows.timestamp[keep]
        image, first = _factorize(vid, ts)
        keys = [(str(rows.videos[vid[i]]), int(ts[i])) for i in first]
        if excluded:
            dropped = np.array([k in excluded for k in keys], bool)
            if dropped.any():
                new_index = np.cumsum(~dropped) - 1
                row_ok = ~dropped[image]
                keep, image = keep[row_ok], new_index[image[row_ok]]
                keys = [k for k, x in zip(keys, dropped, strict=True) if not x]
        score = rows.score[keep]
        action = rows.action_id[keep]
        yxyx = rows.boxes[keep][:, [1, 0, 3, 2]]
        order = _official_order(image, score, action, yxyx, capacity)
        return _Keyframes(keys, image[order], keep[order], score[order], action[order], yxyx[order])


def _factorize(vid: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keyframe index of each row, numbered by first appearance, and the first row of each keyframe."""
    if vid.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t0, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
    if (int(vid.max()) + 1) * span < 2**62:
        code = vid * span + (ts - t0)
    else:  # absurd timestamp ranges: fall back to a dense rank of the timestamps
        code = vid * ts.size + np.unique(ts, return_inverse=True)[1].reshape(-1)
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    by_first = np.argsort(first)
    rank[by_first] = np.arange(first.size)
    return rank[inverse.reshape(-1)], first[by_first]


def _match_keys(det_keys: list[tuple[str, int]], gt_keys: list[tuple[str, int]]) -> np.ndarray:
    """[len(det_keys)] index of each detection keyframe among the GT keyframes, -1 where absent."""
    where = {k: i for i, k in enumerate(gt_keys)}
    return np.array([where.get(k, -1) for k in det_keys], np.int64)


def _official_order(image: np.ndarray, score: np.ndarray, action: np.ndarray, yxyx: np.ndarray,
                    capacity: int) -> np.ndarray:
    """Indices of the rows the official `read_csv` keeps, ordered by keyframe, then as it emits them.

    image [n] keyframe index of each row (rows in file order). capacity 0 = no cap (GT).
    """
    n = image.size
    arrival = np.argsort(image, kind="stable")          # rows grouped by keyframe, file order inside
    counts = np.bincount(image, minlength=int(image.max()) + 1 if n else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    kept = arrival if capacity < 1 else arrival[_capped_set(image[arrival], score[arrival], action[arrival],
                                                            yxyx[arrival], counts, starts, capacity)]
    # Layout matters only between kept rows of one keyframe with equal (score, action): replay those heaps.
    layout = np.zeros(kept.size, np.int64)
    tied = _images_with_ties(image[kept], score[kept], action[kept])
    if tied.size:
        replay = arrival[np.isin(image[arrival], tied)]
        heap_rows, heap_pos = _replay_heaps(image[replay], score[replay], action[replay], yxyx[replay],
                                            capacity, replay)
        others = kept[~np.isin(image[kept], tied)]
        kept = np.concatenate([others, heap_rows])
        layout = np.concatenate([np.zeros(others.size, np.int64), heap_pos])
    # Official: sorted(heap, key=-score), stable. Non-replayed keyframes have no ties that matter.
    return kept[np.lexsort((layout, -score[kept], image[kept]))]


def _capped_set(image, score, action, yxyx, counts, starts, capacity) -> np.ndarray:
    """Positions (in the given arrival order) of the rows a heap capped at `capacity` holds at the end.

    Pushes go in while the heap has room; then a row replaces the smallest tuple only if its score is strictly
    higher than that tuple's score. The multiset of scores held is always the top-`capacity` of the rows seen,
    so with t the final capacity-th largest score of a keyframe: every row scoring > t is kept; rows scoring
    exactly t that arrived up to the moment the capacity-th row scoring >= t arrived were all pushed (the heap
    minimum was below t), later ones were refused; each later row scoring > t evicted the smallest tuple among
    those, so the largest (capacity - #rows > t) of them by tuple (action, y1, x1, y2, x2) stay.
    """
    n = image.size
    big = counts > capacity
    row_big = big[image]
    if not row_big.any():
        return np.arange(n)
    by_score = np.lexsort((-score, image))                # each keyframe's rows by descending score
    t = np.full(counts.size, np.inf)
    t[big] = score[by_score[starts[big] + capacity - 1]]
    t_row = t[image]
    above = row_big & (score > t_row)
    at_least = row_big & (score >= t_row)
    running = np.cumsum(at_least) - np.concatenate([[0], np.cumsum(at_least)])[starts[image]]
    candidates = np.flatnonzero(row_big & (score == t_row) & (running <= capacity))
    slots = capacity - np.bincount(image[above], minlength=counts.size)
    y1, x1, y2, x2 = (yxyx[candidates, k] for k in range(4))
    c_img = image[candidates]
    best_first = candidates[np.lexsort((-x2, -y2, -x1, -y1, -action[candidates], c_img))]
    b_img = image[best_first]
    b_start = np.searchsorted(b_img, b_img, side="left")
    chosen = best_first[np.arange(best_first.size) - b_start < slots[b_img]]
    return np.sort(np.concatenate([np.flatnonzero(~row_big | above), chosen]))


def _images_with_ties(image: np.ndarray, score: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Keyframes holding two rows with the same score and action (their relative order is the heap's)."""
    if image.size < 2:
        return np.zeros(0, np.int64)
    o = np.lexsort((action, score, image))
    i, s, a = image[o], score[o], action[o]
    same = (i[1:] == i[:-1]) & (s[1:] == s[:-1]) & (a[1:] == a[:-1])
    return np.unique(i[1:][same])


def _replay_heaps(image, score, action, yxyx, capacity, rows) -> tuple[np.ndarray, np.ndarray]:
    """Runs the official heap on these keyframes (rows grouped by keyframe, file order inside).

    Tuples are replaced by dense integer ranks of (keyframe, score, action, y1, x1, y2, x2), which compare as
    the tuples do within a keyframe. Returns the held rows and their positions in the heap's list.
    """
    o = np.lexsort((yxyx[:, 3], yxyx[:, 2], yxyx[:, 1], yxyx[:, 0], action, score, image))
    key = np.stack([image.astype(np.float64), score, action.astype(np.float64), *yxyx.T], axis=1)[o]
    new = np.concatenate([[True], (key[1:] != key[:-1]).any(axis=1)])
    rank = np.empty(image.size, np.int64)
    rank[o] = np.cumsum(new) - 1
    rank_row = np.empty(int(rank.max()) + 1, np.int64)
    rank_row[rank] = rows
    new_score = np.concatenate([[True], (key[1:, :2] != key[:-1, :2]).any(axis=1)])
    score_rank = np.empty(int(rank.max()) + 1, np.int64)
    score_rank[np.cumsum(new) - 1] = np.cumsum(new_score) - 1
    sr = score_rank.tolist()
    bounds = np.flatnonzero(np.diff(image)) + 1
    out_rows, out_pos = [], []
    for seq in np.split(rank, bounds):
        heap: list[int] = []
        for r in seq.tolist():
            if capacity < 1 or len(heap) < capacity:
                heapq.heappush(heap, r)
            elif sr[r] > sr[heap[0]]:
                heapq.heapreplace(heap, r)
        out_rows.extend(heap)
        out_pos.extend(range(len(heap)))
    return rank_row[np.asarray(out_rows, np.int64)], np.asarray(out_pos, np.int64)


def _match(det_image: np.ndarray, det_action: np.ndarray, det_boxes: np.ndarray, g: _Keyframes,
           max_id: int) -> np.ndarray:
    """True-positive flag of each detection (rows in official processing order), VOC greedy matching.

    det_image: GT keyframe index of each detection (-1 when the keyframe has no GT); boxes y1, x1, y2, x2.
    """
    n = det_image.size
    # GT grouped by (keyframe, action), official in-keyframe order kept inside each group.
    g_order = np.lexsort((np.arange(g.image.size), g.action, g.image))
    g_key = g.image[g_order] * (max_id + 1) + g.action[g_order]
    d_key = det_image * (max_id + 1) + det_action
    lo = np.searchsorted(g_key, d_key, side="left")
    hi = np.searchsorted(g_key, d_key, side="right")
    lo[det_image < 0] = hi[det_image < 0] = 0
    num = hi - lo
    pair_det = np.repeat(np.arange(n), num)
    pair_gt = g_order[np.arange(pair_det.size) - np.repeat(np.cumsum(num) - num, num) + np.repeat(lo, num)]
    iou = _official_iou(det_boxes[pair_det], g.boxes[pair_gt])
    has = num > 0
    seg_start = (np.cumsum(num) - num)[has]
    best = np.full(n, -np.inf)
    best[has] = np.maximum.reduceat(iou, seg_start) if pair_det.size else []
    # First pair reaching the maximum (np.argmax semantics; NaN cannot occur for valid boxes).
    hit = np.flatnonzero(iou == best[pair_det])
    first_hit = hit[np.unique(pair_det[hit], return_index=True)[1]]
    arg_gt = np.full(n, -1, np.int64)
    arg_gt[pair_det[first_hit]] = pair_gt[first_hit]
    eligible = np.flatnonzero(best >= IOU_THRESHOLD)
    tp = np.zeros(n, bool)
    tp[eligible[np.unique(arg_gt[eligible], return_index=True)[1]]] = True   # first claim of each GT box
    return tp


def _official_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of y1, x1, y2, x2 boxes with the official `np_box_ops.iou` operations, in its order."""
    heights = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    widths = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    intersect = heights * widths
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return intersect / (area_a + area_b - intersect)


def _voc_ap(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """VOC AP with the official `compute_precision_recall` + `compute_average_precision` operations."""
    labels = is_tp.astype(int)[np.argsort(scores)[::-1]]
    cum_tp = np.cumsum(labels)
    cum_fp = np.cumsum(1 - labels)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / np.int64(num_gt)
    if not precision.size:
        return 0.0
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[indices] - recall[indices - 1]) * precision[indices]))


def format_result(result: FrameMapResult) -> str:
    """Per-class AP lines (label-map order) and, last, `mAP@0.5IOU: <repr>`."""
    width = max(len(n) for n in result.class_names)
    lines = [f"{cid:3d} {name:<{width}}  AP@0.5IOU: {ap!r}"
             for cid, name, ap in zip(result.class_ids, result.class_names, result.ap.tolist(), strict=True)]
    lines.append(f"mAP@0.5IOU: {result.mean_ap!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """CLI with the official script's flags. Bad input: one line `error: <file:line: what>` on stderr and exit
    status 1 (no traceback); warnings are one line each on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-l", "--labelmap", default=str(DEFAULT_LABEL_MAP),
                        help="label map (.pbtxt); default: the 60-class AVA v2.2 map shipped with acar_jax")
    parser.add_argument("-g", "--groundtruth", required=True, help="GT CSV")
    parser.add_argument("-d", "--detections", required=True, help="result CSV to score")
    parser.add_argument("-e", "--exclusions", default=None, help="excluded keyframes (video_id,timestamp)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EvaluationWarning)
        try:
            result = evaluate_frame_map(args.labelmap, args.groundtruth, args.detections, args.exclusions)
        except (ValueError, OSError) as e:   # AvaFormatError is a ValueError; missing files are OSErrors
            _print_warnings(caught)
            print(f"error: {_one_line(e)}", file=sys.stderr)
            sys.exit(1)
    _print_warnings(caught)
    print(format_result(result))


def _one_line(error: Exception) -> str:
    """The error's message on one line; OS errors as `<file>: <reason>`."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split("\n"))


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
