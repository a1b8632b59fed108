"""Fuses AVA result CSVs of several models with per-class weights from their per-class AP on a held-out split.

The paper's ensemble sets each model's weight on a class from its AP on that class. Exactly:

  weight  w[m, c] = AP[m, c] ** power / sum_m' AP[m', c] ** power      (power 1: proportional to AP)
  score   s[box, c] = sum_m w[m, c] * s_m[box, c]            (the models' CSV scores, summed in model order)

AP[m, c] is model m's AP for class c on the held-out split, either read from per-class AP tables
(`acar_jax.evaluation.report.write_table_csv`, `--per_class_ap`) or computed with the frame-mAP from each
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acar_jax.evaluation.ensemble import ap_weights, fuse, heldout_ap  # noqa: E402
from acar_jax.evaluation.result_csv import read_result_csv, write_result_csv  # noqa: E402
from data_pipelines.ava_files import read_label_map  # noqa: E402


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

    class_ids = tuple(int(c) for c in read_label_map(args.label_map).ids)
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
