"""Fuses AVA result CSVs of several models with per-class weights from their per-class AP on a held-out split.

The paper's ensemble sets each model's weight on a class from its AP on that class. Exactly:

  weight  w[m, c] = AP[m, c] ** power / sum_m' AP[m', c] ** power      (power 1: proportional to AP)
  score   s[box, c] = sum_m w[m, c] * s_m[box, c]            (the models' CSV scores, summed in model order)

AP[m, c] is model m's AP for class c on the held-out split, either read from per-class AP tables
(`acar_jax.eval_report.write_table_csv`, `--per_class_ap`) or computed here with `acar_jax.ava_eval` from each
model's held-out result CSV (`--heldout_results` with `--groundtruth`, optional `--exclusions`). A NaN AP (the
class has no held-out GT) counts as 0; a class whose APs are all 0 or NaN falls back to equal weights 1/M.
`--power` sharpens (> 1) or flattens (< 1) the weighting; 0 weights the models with AP > 0 equally.

Boxes are matched exactly, not by IoU: every model must have been run on the same detections and have written
the same rows, i.e. the same (video_id, timestamp, x1, y1, x2, y2, action_id) keys as parsed from the CSVs
(same box rounding). A key present in one file and not in another, or repeated in a file, is an error naming
the file and line. The fused CSV keeps the first model's row order and boxes as read.

    python tools/ensemble.py -l LABELMAP --results a.csv b.csv --per_class_ap a_ap.csv b_ap.csv -o fused.csv
    python tools/ensemble.py -l LABELMAP --results a.csv b.csv --heldout_results a_val.csv b_val.csv \\
        --groundtruth val_gt.csv [--exclusions excl.csv] -o fused.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acar_jax import ava_eval, eval_report  # noqa: E402
from acar_jax.result_csv import AvaRows, read_result_csv, write_result_csv  # noqa: E402


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
            table = eval_report.read_table_csv(path)
            missing = [c for c in class_ids if c not in table]
            if missing:
                raise ValueError(f"{path}: no AP for class ids {missing[:5]} of the label map")
            rows.append([table[c] for c in class_ids])
    else:
        if not groundtruth:
            raise ValueError("--heldout_results needs --groundtruth (the held-out split's GT CSV)")
        for path in results:
            ap = ava_eval.evaluate(label_map, groundtruth, path, exclusions).ap_by_id()
            rows.append([ap[c] for c in class_ids])
    return np.array(rows, np.float64)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-l", "--label_map", required=True, help="label map (.pbtxt) of the result CSVs")
    parser.add_argument("--results", nargs="+", required=True, help="result CSVs to fuse, one per model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--per_class_ap", nargs="+", help="per-class AP tables on the held-out split")
    source.add_argument("--heldout_results", nargs="+", help="result CSVs on the held-out split")
    parser.add_argument("--groundtruth", help="held-out GT CSV (with --heldout_results)")
    parser.add_argument("--exclusions", help="held-out excluded keyframes (with --heldout_results)")
    parser.add_argument("--power", type=float, default=1.0, help="weights proportional to AP ** power")
    parser.add_argument("--score_decimals", type=int, default=None, help="round fused scores (default: no)")
    parser.add_argument("-o", "--output", required=True, help="fused result CSV to write")
    args = parser.parse_args(argv)

    class_ids = tuple(int(c) for c in ava_eval.read_label_map(args.label_map).ids)
    per_model = args.per_class_ap or args.heldout_results
    if len(per_model) != len(args.results):
        raise SystemExit(f"{len(args.results)} result CSVs but {len(per_model)} held-out AP sources: give "
                         f"one per model, in the same order")
    ap = heldout_ap(args.label_map, args.heldout_results, args.per_class_ap, args.groundtruth,
                    args.exclusions, class_ids)
    weights = ap_weights(ap, args.power)
    results = [read_result_csv(path, class_ids) for path in args.results]
    scores = fuse(results, weights, class_ids)
    first = results[0]
    write_result_csv(args.output, first.video_id, first.timestamp, first.boxes, first.action_id, scores,
                     box_decimals=None, score_decimals=args.score_decimals)
    mean_w = weights.mean(axis=1)
    print(f"fused {len(results)} models over {len(first)} rows -> {args.output}")
    for path, w in zip(args.results, mean_w, strict=True):
        print(f"  {path}: mean class weight {w:.4f}")


if __name__ == "__main__":
    main()
