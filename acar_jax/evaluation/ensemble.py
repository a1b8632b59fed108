"""Per-class weighted fusion of several models' AVA result CSVs (the paper's ensemble).

  weight  w[m, c] = AP[m, c] ** power / sum_m' AP[m', c] ** power      (power 1: proportional to AP)
  score   s[box, c] = sum_m w[m, c] * s_m[box, c]            (the models' CSV scores, summed in model order)

AP[m, c] is model m's AP for class c on a held-out split. A NaN AP (the class has no held-out GT) counts as 0;
a class whose APs are all 0 or NaN falls back to equal weights 1/M. Boxes are matched exactly, not by IoU:
every model must have been run on the same detections and have written the same (video_id, timestamp, x1, y1,
x2, y2, action_id) keys; a key present in one file and not in another, or repeated in a file, is an error
naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from acar_jax.evaluation import ava_metric, report
from acar_jax.evaluation.result_csv import AvaRows


def ap_weights(ap: np.ndarray, power: float = 1.0) -> np.ndarray:
    """[M, C] per-model per-class AP (NaN allowed) -> [M, C] weights, summing to 1 over models per class."""
    ap = np.asarray(ap, np.float64)
    if ap.ndim != 2 or ap.shape[0] < 1:
        raise ValueError(f"ap: expected [num_models, num_classes], got shape {ap.shape}")
    a = np.nan_to_num(ap, nan=0.0)
    if (a < 0).any():
        raise ValueError("ap: per-class APs must be >= 0")
    a = np.where(a > 0, a ** power, 0.0)
    total = a.sum(axis=0, keepdims=True)
    uniform = np.full_like(a, 1.0 / a.shape[0])
    return np.where(total > 0, a / np.where(total > 0, total, 1.0), uniform)


def align_rows(results: Sequence[AvaRows]) -> list[np.ndarray]:
    """For each model, the index of its row matching each row of model 0 (exact key match).

    Keys: (video_id, timestamp, x1, y1, x2, y2, action_id). Raises ValueError naming the file and line of a
    repeated key, or of a key one file has and another lacks.
    """
    videos = {v: i for i, v in enumerate(sorted(set().union(*(set(r.videos.tolist()) for r in results))))}
    keyed = []
    for rows in results:
        vid = np.array([videos[v] for v in rows.videos.tolist()], np.int64)[rows.video_index]
        key = np.column_stack([vid, rows.timestamp, rows.boxes, rows.action_id]).astype(np.float64)
        order = np.lexsort(key.T[::-1])
        sorted_key = key[order]
        same = np.flatnonzero((sorted_key[1:] == sorted_key[:-1]).all(axis=1))
        if same.size:
            i, j = sorted(order[same[0]:same[0] + 2])
            raise ValueError(f"{rows.where(j)}: repeats the row at line {i + 1} "
                             f"(same keyframe, box and action)")
        keyed.append((order, sorted_key))
    order0, key0 = keyed[0]
    out = []
    for rows, (order, key) in zip(results, keyed, strict=True):
        if key.shape != key0.shape or not np.array_equal(key, key0):
            _raise_mismatch(results[0], rows, order0, key0, order, key)
        idx = np.empty(len(rows), np.int64)
        idx[order0] = order
        out.append(idx)
    return out


def _raise_mismatch(first: AvaRows, rows: AvaRows, order0, key0, order, key) -> None:
    n = min(len(key0), len(key))
    diff = np.flatnonzero((key0[:n] != key[:n]).any(axis=1))
    k = int(diff[0]) if diff.size else n
    if k < len(key0) and (k >= len(key) or tuple(key0[k]) < tuple(key[k])):
        i = int(order0[k])
        raise ValueError(f"{first.where(i)}: row (video {first.video_id[i]}, timestamp {first.timestamp[i]}, "
                         f"box {first.boxes[i].tolist()}, action {first.action_id[i]}) has no match in "
                         f"{rows.path}; the models must be run on the same detections")
    i = int(order[k])
    raise ValueError(f"{rows.where(i)}: row (video {rows.video_id[i]}, timestamp {rows.timestamp[i]}, box "
                     f"{rows.boxes[i].tolist()}, action {rows.action_id[i]}) has no match in {first.path}; "
                     f"the models must be run on the same detections")


def fuse(results: Sequence[AvaRows], weights: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """[n] fused scores for the rows of results[0]: sum over models of w[m, class] * score, in model order."""
    weights = np.asarray(weights, np.float64)
    if weights.shape != (len(results), len(class_ids)):
        raise ValueError(f"weights: expected shape {(len(results), len(class_ids))}, got {weights.shape}")
    column = {int(c): i for i, c in enumerate(class_ids)}
    cls = np.array([column[int(a)] for a in results[0].action_id.tolist()], np.int64)
    fused = np.zeros(len(results[0]))
    for m, (rows, idx) in enumerate(zip(results, align_rows(results), strict=True)):
        fused = fused + weights[m, cls] * rows.score[idx]
    return fused


def heldout_ap(label_map: str, results: Sequence[str] | None, per_class_ap: Sequence[str] | None,
               groundtruth: str | None, exclusions: str | None, class_ids: Sequence[int]) -> np.ndarray:
    """[M, C] per-class AP of each model on the held-out split, from tables or computed from result CSVs."""
    rows = []
    if per_class_ap:
        for path in per_class_ap:
            table = report.read_table_csv(path)
            missing = [c for c in class_ids if c not in table]
            if missing:
                raise ValueError(f"{path}: no AP for class ids {missing[:5]} of the label map")
            rows.append([table[c] for c in class_ids])
    else:
        if not groundtruth:
            raise ValueError("--heldout_results needs --groundtruth (the held-out split's GT CSV)")
        for path in results:
            ap = ava_metric.evaluate_frame_map(label_map, groundtruth, path, exclusions).ap_by_id()
            rows.append([ap[c] for c in class_ids])
    return np.array(rows, np.float64)
