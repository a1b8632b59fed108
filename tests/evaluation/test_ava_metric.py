"""acar_jax.evaluation.ava_metric: hand-derived AP values, and exact equality (==, ties included) with the official
code.

Oracle for the randomised test: the official ActivityNet code when AVA_OFFICIAL_EVAL_DIR points at a copy
(ACAR-Net's `calc_mAP.py` + `ava_evaluation/`, or ActivityNet's `get_ava_performance.py` + `ava/`), else
`_reference_map` below: a deliberately literal per-keyframe loop written from the official semantics (heapq
reader, per-class greedy matching with np.argmax, concatenation in keyframe order, np.argsort, VOC AP loop).
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import importlib
import io
import logging
import os
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from acar_jax.evaluation import ava_metric
from acar_jax.evaluation.result_csv import read_evaluator_csv
from tests.helpers import paths

ROOT = paths.REPO
LABEL_MAP = paths.AVA_LABEL_MAP
LABEL_IDS = ava_metric.read_label_map(str(LABEL_MAP)).ids
FAR = (0.8, 0.8, 0.9, 0.9)   # a box that overlaps none of the boxes below


def _write(path: Path, rows) -> Path:
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def _gt(vid, ts, box, action, person=0):
    return (vid, ts, *box, action, person)


def _det(vid, ts, box, action, score):
    return (vid, ts, *box, action, score)


def _evaluate(tmp_path, gt_rows, det_rows, excluded=None):
    gt = _write(tmp_path / "gt.csv", gt_rows)
    det = _write(tmp_path / "det.csv", det_rows)
    ex = _write(tmp_path / "ex.csv", excluded) if excluded else None
    return ava_metric.evaluate_frame_map(LABEL_MAP, gt, det, ex)


A, B, C = (0.1, 0.1, 0.4, 0.5), (0.5, 0.2, 0.9, 0.7), (0.0, 0.5, 0.3, 1.0)


def test_perfect_detections_score_one_and_classes_without_gt_are_nan(tmp_path):
    gt = [_gt("v1", 902, A, 12), _gt("v1", 902, A, 80), _gt("v1", 903, B, 12), _gt("v2", 902, C, 17)]
    det = [_det("v1", 902, A, 12, 0.9), _det("v1", 902, A, 80, 0.3), _det("v1", 903, B, 12, 0.5),
           _det("v2", 902, C, 17, 0.7)]
    r = _evaluate(tmp_path, gt, det)
    ap = r.ap_by_id()
    assert ap[12] == ap[80] == ap[17] == 1.0
    assert np.isnan(ap[1]) and np.isnan(ap[14])
    assert r.mean_ap == 1.0
    assert r.num_gt[r.class_ids.index(12)] == 2


def test_false_positive_ranked_first(tmp_path):
    # labels by score: FP, TP, TP -> precision 0, 1/2, 2/3; recall 0, 1/2, 1 -> AP = 1/2 * 2/3 + 1/2 * 2/3.
    gt = [_gt("v", 902, A, 12), _gt("v", 902, B, 12)]
    det = [_det("v", 902, FAR, 12, 0.9), _det("v", 902, A, 12, 0.8), _det("v", 902, B, 12, 0.7)]
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == pytest.approx(2 / 3, abs=1e-15)


def test_duplicate_detection_is_a_false_positive(tmp_path):
    # A (TP), A again (FP: its GT is taken), B (TP): precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    # -> AP = 1/2 + 1/2 * 2/3.
    gt = [_gt("v", 902, A, 12), _gt("v", 902, B, 12)]
    det = [_det("v", 902, A, 12, 0.9), _det("v", 902, A, 12, 0.8), _det("v", 902, B, 12, 0.7)]
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == pytest.approx(5 / 6, abs=1e-15)


def test_excluded_keyframes_are_skipped_in_gt_and_detections(tmp_path):
    gt = [_gt("v", 902, A, 12), _gt("v", 903, A, 12)]
    det = [_det("v", 902, A, 12, 0.5), _det("v", 903, FAR, 12, 0.9)]
    # FP first, then 1 of 2 GT boxes found: AP 1/2 * 1/2.
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == pytest.approx(0.5 / 2, abs=1e-15)
    assert _evaluate(tmp_path, gt, det, excluded=[("v", 903)]).ap_by_id()[12] == 1.0
    assert _evaluate(tmp_path, gt, det, excluded=[("v", "0903")]).ap_by_id()[12] == 1.0   # key is int(ts)


def test_class_absent_from_gt_is_nan_and_left_out_of_the_mean(tmp_path):
    gt = [_gt("v", 902, A, 12), _gt("v", 902, B, 17)]
    det = [_det("v", 902, A, 12, 0.9), _det("v", 902, FAR, 17, 0.9), _det("v", 902, B, 17, 0.8),
           _det("v", 902, A, 20, 0.9)]   # class 20: detections, no GT
    r = _evaluate(tmp_path, gt, det)
    ap = r.ap_by_id()
    assert np.isnan(ap[20])
    assert ap[12] == 1.0 and ap[17] == 0.5
    assert r.mean_ap == 0.75


def test_class_with_gt_and_no_detection_scores_zero(tmp_path):
    r = _evaluate(tmp_path, [_gt("v", 902, A, 12), _gt("v", 902, A, 17)], [_det("v", 902, A, 12, 0.9)])
    assert r.ap_by_id()[17] == 0.0 and r.mean_ap == 0.5


def test_more_than_50_detections_on_a_keyframe_keep_the_top_50(tmp_path):
    # 59 false positives above the one true positive: the cap drops it, AP 0 (uncapped it would be 1/60).
    gt = [_gt("v", 902, A, 12)]
    det = [_det("v", 902, FAR, 12, 0.5 + i / 1000) for i in range(59)] + [_det("v", 902, A, 12, 0.1)]
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == 0.0
    # 49 rows above it: it is the 50th and stays, ranked 50th -> AP 1/50.
    det = [_det("v", 902, FAR, 12, 0.5 + i / 1000) for i in range(49)] + [_det("v", 902, A, 12, 0.1)]
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == pytest.approx(1 / 50, abs=1e-15)


def test_cap_ties_follow_the_official_heap(tmp_path):
    # 49 rows at 0.9, then the TP at 0.5 (50th, the heap is full), then an FP at 0.5: refused (not strictly
    # higher than the minimum). Then a row at 0.95 evicts the smallest tuple, which is the TP -> AP 0.
    gt = [_gt("v", 902, A, 12)]
    rows = [_det("v", 902, FAR, 17, 0.9)] * 49 + [_det("v", 902, A, 12, 0.5), _det("v", 902, B, 12, 0.5)]
    assert _evaluate(tmp_path, gt, rows).ap_by_id()[12] == 1.0
    assert _evaluate(tmp_path, gt, rows + [_det("v", 902, FAR, 17, 0.95)]).ap_by_id()[12] == 0.0
    # Among rows of equal score the heap evicts the smallest tuple (action, y1, ...): class 12 < 17 goes
    # first, so with the 0.5 rows of classes 12 and 17 both in, the class-17 row survives a later 0.95 row.
    rows = [_det("v", 902, FAR, 17, 0.9)] * 48 + [_det("v", 902, A, 12, 0.5), _det("v", 902, A, 17, 0.5)]
    gt17 = gt + [_gt("v", 902, A, 17)]
    ap = _evaluate(tmp_path, gt17, rows + [_det("v", 902, FAR, 20, 0.95)]).ap_by_id()
    assert ap[12] == 0.0 and ap[17] > 0.0


def test_invalid_detection_boxes_are_dropped_after_the_cap(tmp_path):
    gt = [_gt("v", 902, A, 12)]
    zero_width = (0.3, 0.1, 0.3, 0.5)
    det = [_det("v", 902, zero_width, 12, 0.9), _det("v", 902, A, 12, 0.1)]
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == 1.0   # not an FP: dropped


def test_detections_on_keyframes_without_gt_are_false_positives(tmp_path):
    gt = [_gt("v", 902, A, 12)]
    det = [_det("w", 902, A, 12, 0.9), _det("v", 902, A, 12, 0.8)]
    assert _evaluate(tmp_path, gt, det).ap_by_id()[12] == 0.5


def test_empty_detection_file_scores_zero_and_empty_gt_gives_nan(tmp_path):
    gt = _write(tmp_path / "gt.csv", [_gt("v", 902, A, 12)])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    r = ava_metric.evaluate_frame_map(LABEL_MAP, gt, empty)
    assert r.ap_by_id()[12] == 0.0 and r.mean_ap == 0.0
    det = _write(tmp_path / "det.csv", [_det("v", 902, A, 12, 0.9)])
    assert np.isnan(ava_metric.evaluate_frame_map(LABEL_MAP, empty, det).mean_ap)


def test_cli_prints_per_class_ap_and_full_precision_map_last(tmp_path, capsys):
    gt = _write(tmp_path / "gt.csv", [_gt("v", 902, A, 12), _gt("v", 902, B, 12), _gt("v", 903, A, 17)])
    det = _write(tmp_path / "det.csv", [_det("v", 902, FAR, 12, 0.9), _det("v", 902, A, 12, 0.8),
                                        _det("v", 902, B, 12, 0.7), _det("v", 903, A, 17, 0.3)])
    ava_metric.main(["-l", str(LABEL_MAP), "-g", str(gt), "-d", str(det)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"mAP@0.5IOU: {(2 / 3 + 1) / 2!r}"
    assert len(lines) == len(LABEL_IDS) + 1 and "AP@0.5IOU" in lines[0]


def test_bad_inputs_raise_errors_naming_file_and_line(tmp_path):
    gt = _write(tmp_path / "gt.csv", [_gt("v", 902, A, 12), ("v", 902, 0.5, 0.1, 0.4, 0.5, 12, 1)])
    det = _write(tmp_path / "det.csv", [_det("v", 902, A, 12, 0.9)])
    with pytest.raises(ValueError, match=r"gt\.csv:2: GT box has x1 > x2"):
        ava_metric.evaluate_frame_map(LABEL_MAP, gt, det)
    gt = _write(tmp_path / "gt.csv", [_gt("v", 902, A, 12)])
    det = _write(tmp_path / "det.csv", [_det("v", 902, A, 12, 0.9), _det("v", 902, A, 12, "nan")])
    with pytest.raises(ValueError, match=r"det\.csv:2: .*finite"):
        ava_metric.evaluate_frame_map(LABEL_MAP, gt, det)


# ----------------------------------------------------------------------------------------------------------
# Randomised equality with the official evaluator (or the literal reference below).
# ----------------------------------------------------------------------------------------------------------

def _same(a: float, b: float) -> bool:
    """Bit-level equality of two floats, NaN equal to NaN."""
    return (np.isnan(a) and np.isnan(b)) or a == b


def _reference_read(path, whitelist, capacity):
    """The official `read_csv`, literally: per-keyframe heapq of tuples, stable sort by -score."""
    entries = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.reader(f):
            key = (row[0], int(row[1]))
            x1, y1, x2, y2 = (float(v) for v in row[2:6])
            action = int(row[6])
            if action not in whitelist:
                continue
            score = float(row[7]) if len(row) == 8 else 1.0
            item = (score, action, y1, x1, y2, x2)
            if capacity < 1 or len(entries[key]) < capacity:
                heapq.heappush(entries[key], item)
            elif score > entries[key][0][0]:
                heapq.heapreplace(entries[key], item)
    return {key: sorted(items, key=lambda t: -t[0]) for key, items in entries.items()}


def _reference_ap(scores, tp, num_gt):
    order = np.argsort(scores)[::-1]
    labels = tp.astype(int)[order]
    cum_tp, cum_fp = np.cumsum(labels), np.cumsum(1 - labels)
    precision = list(cum_tp / (cum_tp + cum_fp))
    recall = list(cum_tp.astype(float) / num_gt)
    if not precision:
        return 0.0
    recall, precision = np.array([0.0] + recall + [1.0]), np.array([0.0] + precision + [0.0])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    idx = np.where(recall[1:] != recall[:-1])[0] + 1
    return np.sum((recall[idx] - recall[idx - 1]) * precision[idx])


def _reference_map(label_ids, gt_path, det_path, excluded):
    whitelist = set(label_ids)
    num_class = max(label_ids)
    gt = {k: v for k, v in _reference_read(gt_path, whitelist, 0).items() if k not in excluded}
    det = {k: v for k, v in _reference_read(det_path, whitelist, 50).items() if k not in excluded}
    num_gt = np.zeros(num_class + 1, int)
    for items in gt.values():
        for item in items:
            num_gt[item[1]] += 1
    scores, labels = defaultdict(list), defaultdict(list)
    for key, items in det.items():
        items = [t for t in items if t[2] < t[4] and t[3] < t[5]]
        for c in range(1, num_class + 1):
            dets = [t for t in items if t[1] == c]
            gts = [t[2:] for t in gt.get(key, []) if t[1] == c]
            taken = [False] * len(gts)
            for t in dets:
                tp = False
                if gts:
                    ious = []
                    for g in gts:   # np_box_ops.iou term by term
                        h = max(0.0, min(t[4], g[2]) - max(t[2], g[0]))
                        w = max(0.0, min(t[5], g[3]) - max(t[3], g[1]))
                        inter = h * w
                        union = (t[4] - t[2]) * (t[5] - t[3]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                        ious.append(inter / union)
                    j = int(np.argmax(ious))
                    if ious[j] >= 0.5 and not taken[j]:
                        tp = taken[j] = True
                scores[c].append(t[0])
                labels[c].append(tp)
    ap = np.full(num_class, np.nan)
    for c in range(1, num_class + 1):
        if num_gt[c]:
            ap[c - 1] = _reference_ap(np.array(scores[c], float), np.array(labels[c], bool), num_gt[c])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {c: ap[c - 1] for c in label_ids}, np.nanmean(ap)


def _official_map(directory, label_map, gt_path, det_path, ex_path):
    if not hasattr(np, "float"):   # aliases the 2019 code uses and numpy 1.24 / 2.0 removed
        np.float = float
    if not hasattr(np, "NAN"):
        np.NAN = np.nan
    if os.path.exists(os.path.join(directory, "calc_mAP.py")):
        sys.path.insert(0, directory)
        module = importlib.import_module("calc_mAP")
    else:
        sys.path[:0] = [directory, os.path.join(directory, "ava")]
        module = importlib.import_module("get_ava_performance")
    logging.disable(logging.CRITICAL)
    files = [open(p) if p else None for p in (label_map, gt_path, det_path, ex_path)]
    evaluator = module.object_detection_evaluation.ObjectDetectionEvaluator
    evaluate, captured = evaluator.evaluate, []
    # ActivityNet's run_evaluation prints the metrics and returns None: capture them.
    evaluator.evaluate = lambda self: captured.append(evaluate(self)) or captured[-1]
    try:
        takes_logger = "logger" in module.run_evaluation.__code__.co_varnames
        kwargs = {"logger": logging.getLogger("x")} if takes_logger else {}
        with contextlib.redirect_stdout(io.StringIO()):
            module.run_evaluation(*files, **kwargs)
        m = captured[-1]
    finally:
        evaluator.evaluate = evaluate
        for f in files:
            if f:
                f.close()
    names = dict(zip(ava_metric.read_label_map(str(LABEL_MAP)).names, LABEL_IDS, strict=True))
    prefix = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"
    per_class = {names[k[len(prefix):]]: v for k, v in m.items() if k.startswith(prefix)}
    return per_class, m["PascalBoxes_Precision/mAP@0.5IOU"]


def _random_case(rng, tmp_path):
    """Few boxes on a coarse grid and few score values: ties in IoU, score and heap tuples everywhere."""
    classes = [1, 3, 12, 17, 80, 2]   # 2 is not in the 60-class map: filtered
    keys = [(f"v{rng.integers(3)}", int(902 + rng.integers(4))) for _ in range(rng.integers(1, 6))]
    grid = np.linspace(0.0, 1.0, 5)
    boxes = []
    for _ in range(6):
        xs, ys = np.sort(rng.choice(grid, 2, replace=False)), np.sort(rng.choice(grid, 2, replace=False))
        boxes.append((xs[0], ys[0], xs[1], ys[1]))
    boxes.append((0.25, 0.25, 0.25, 0.75))   # zero width: an invalid detection
    gt = [_gt(*keys[rng.integers(len(keys))], boxes[rng.integers(6)], rng.choice(classes), rng.integers(3))
          for _ in range(rng.integers(1, 25))]
    scores = [0.1, 0.2, 0.3] if rng.random() < 0.5 else list(np.round(np.linspace(0, 1, 41), 3))
    det = [_det(*keys[rng.integers(len(keys))], boxes[rng.integers(7)], rng.choice(classes),
                rng.choice(scores)) for _ in range(rng.integers(1, 400))]
    det += [_det("novideo", 902, boxes[0], 12, 0.2)]
    excluded = [keys[0]] if rng.random() < 0.5 else None
    gt_path, det_path = _write(tmp_path / "gt.csv", gt), _write(tmp_path / "det.csv", det)
    ex_path = _write(tmp_path / "ex.csv", excluded) if excluded else None
    return gt_path, det_path, ex_path, set(excluded or [])


@pytest.mark.parametrize("seed", range(24))
def test_random_cases_equal_the_official_evaluator_exactly(tmp_path, seed):
    rng = np.random.default_rng(seed)
    gt_path, det_path, ex_path, excluded = _random_case(rng, tmp_path)
    official_dir = os.environ.get("AVA_OFFICIAL_EVAL_DIR")
    if official_dir:
        want_ap, want_map = _official_map(official_dir, str(LABEL_MAP), gt_path, det_path, ex_path)
    else:
        want_ap, want_map = _reference_map(LABEL_IDS, gt_path, det_path, excluded)
    got = ava_metric.evaluate_frame_map(LABEL_MAP, gt_path, det_path, ex_path)
    got_ap = got.ap_by_id()
    for c in LABEL_IDS:
        assert _same(want_ap[c], got_ap[c]), (c, want_ap[c], got_ap[c])
    assert _same(want_map, got.mean_ap)


@pytest.mark.parametrize("seed", range(6))
def test_reader_order_equals_the_official_heap_then_stable_sort(tmp_path, seed):
    """The kept rows and their emitted order, keyframe by keyframe, equal the literal heapq reader."""
    rng = np.random.default_rng(100 + seed)
    n = 3000
    scores = [0.25, 0.5, 0.75] if seed % 2 else range(60)
    rows = [_det(f"v{rng.integers(2)}", int(rng.integers(6)), tuple(rng.choice([0.1, 0.2, 0.6, 0.9], 4)),
                 int(rng.choice([1, 3, 4])), float(rng.choice(scores))) for _ in range(n)]
    path = _write(tmp_path / "det.csv", rows)
    want = _reference_read(path, {1, 3, 4}, 50)
    kf = ava_metric._Keyframes.build(read_evaluator_csv(path), (1, 3, 4), set(), capacity=50)
    assert kf.keys == list(want)
    for i, key in enumerate(kf.keys):
        sel = kf.image == i
        columns = kf.score[sel].tolist(), kf.action[sel].tolist(), *kf.boxes[sel].T.tolist()
        got = list(zip(*columns, strict=True))
        assert got == want[key], key


def test_in_memory_rows_equal_the_csv_path(tmp_path):
    rng = np.random.default_rng(7)
    gt_path, det_path, ex_path, _ = _random_case(rng, tmp_path)
    from_files = ava_metric.evaluate_frame_map(LABEL_MAP, gt_path, det_path, ex_path)
    from_rows = ava_metric.evaluate_frame_map(LABEL_MAP, read_evaluator_csv(gt_path), read_evaluator_csv(det_path),
                                              ex_path)
    assert _same(from_rows.mean_ap, from_files.mean_ap)
