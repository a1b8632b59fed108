"""Times `acar_jax.evaluation.ava_metric` against the official ActivityNet AVA evaluator on an AVA-val-sized case.

    python benchmarks/ava_eval.py [--official_dir DIR] [--keyframes 8000] [--seed 0]

The case is generated (no data needed): about 50k GT rows and 1M detection rows over the 60-class label map,
scores rounded to 3 decimals as in the reference's result CSVs (so tied scores are everywhere), 1% of the
keyframes excluded, some detections on keyframes without GT. `--official_dir` (or the env var
AVA_OFFICIAL_EVAL_DIR) names a directory holding the official code, either ACAR-Net's / SlowFast's layout
(`calc_mAP.py` + `ava_evaluation/`) or ActivityNet's 2019 layout (`get_ava_performance.py` + `ava/`); it is
imported from there, never copied into this project. Prints a table: wall time of each evaluator (CSV reading
included), the speedup and |mAP difference|.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acar_jax.evaluation import ava_metric  # noqa: E402
from data_pipelines.ava_files import read_label_map  # noqa: E402

LABEL_MAP = ava_metric.DEFAULT_LABEL_MAP


def make_case(out_dir: Path, num_keyframes: int, seed: int) -> tuple[Path, Path, Path]:
    """Writes gt.csv (8 columns, person ids), det.csv (a row per detected box and class), exclusions.csv."""
    rng = np.random.default_rng(seed)
    class_ids = np.array(sorted(read_label_map(str(LABEL_MAP)).ids))
    pose_ids, other_ids = class_ids[class_ids <= 14], class_ids[class_ids > 14]
    videos = [f"vid{v:08d}" for v in range(64)]
    slots = rng.choice(64 * 897, size=num_keyframes, replace=False)
    keys = [(videos[s // 897], 902 + s % 897) for s in sorted(slots)]
    gt_lines, det_lines = [], []
    for vid, ts in keys:
        num_people = rng.integers(1, 5)
        xy = np.round(rng.uniform(0.0, 0.6, (num_people, 2)), 3)
        wh = np.round(rng.uniform(0.1, 0.4, (num_people, 2)), 3)
        people = np.concatenate([xy, xy + wh], axis=1)
        labels = []
        for p, box in enumerate(people):
            acts = [rng.choice(pose_ids)] + list(rng.choice(other_ids, rng.integers(0, 4), replace=False))
            labels.append(set(int(a) for a in acts))
            for a in acts:
                gt_lines.append(_row(vid, ts, box, a, f"{p}"))
        detected = [(box + rng.normal(0, 0.03, 4), labels[p])
                    for p, box in enumerate(people) if rng.random() < 0.8]
        if rng.random() < 0.15:  # a false detection
            xy = rng.uniform(0.0, 0.6, 2)
            detected.append((np.concatenate([xy, xy + rng.uniform(0.1, 0.4, 2)]), set()))
        for box, acts in detected:
            box = np.round(np.clip(box, 0.0, 1.0), 3)
            scores = np.where(np.isin(class_ids, list(acts)), rng.beta(2, 3, class_ids.size),
                              rng.beta(0.5, 5, class_ids.size))
            for c, s in zip(class_ids, scores, strict=True):
                det_lines.append(_row(vid, ts, box, c, f"{s:.3f}"))
    # Detections on keyframes without GT, and exclusions.
    for _ in range(num_keyframes // 50):
        vid, ts = videos[rng.integers(64)], 902 + rng.integers(897)
        if (vid, ts) in keys:
            continue
        box = np.round(np.concatenate([xy := rng.uniform(0, 0.6, 2), xy + 0.2]), 3)
        for c in class_ids:
            det_lines.append(_row(vid, ts, box, c, f"{rng.beta(0.5, 5):.3f}"))
    excluded = [keys[i] for i in rng.choice(len(keys), len(keys) // 100, replace=False)]
    order = rng.permutation(len(det_lines))  # result files need not be sorted
    paths = out_dir / "gt.csv", out_dir / "det.csv", out_dir / "exclusions.csv"
    paths[0].write_text("\n".join(gt_lines) + "\n")
    paths[1].write_text("\n".join(det_lines[i] for i in order) + "\n")
    paths[2].write_text("".join(f"{v},{t:04d}\n" for v, t in excluded))
    return paths


def _row(vid: str, ts: int, box, action: int, last: str) -> str:
    return f"{vid},{ts:04d},{box[0]:.3f},{box[1]:.3f},{box[2]:.3f},{box[3]:.3f},{action},{last}"


def load_official(directory: str):
    """Returns `run(labelmap, gt, det, exclusions) -> mAP` from the official code in `directory`."""
    if not hasattr(np, "float"):   # the 2019 code uses aliases that numpy 1.24 / 2.0 removed
        np.float = float
    if not hasattr(np, "NAN"):
        np.NAN = np.nan
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, "calc_mAP.py")):   # ACAR-Net / PySlowFast layout
        sys.path.insert(0, directory)
        module = importlib.import_module("calc_mAP")
    elif os.path.exists(os.path.join(directory, "get_ava_performance.py")):   # ActivityNet layout
        sys.path[:0] = [directory, os.path.join(directory, "ava")]
        module = importlib.import_module("get_ava_performance")
    else:
        raise FileNotFoundError(f"{directory}: neither calc_mAP.py nor get_ava_performance.py found")
    logging.disable(logging.CRITICAL)

    def run(labelmap, gt, det, exclusions) -> float:
        files = [open(p) for p in (labelmap, gt, det, exclusions)]
        evaluator = module.object_detection_evaluation.ObjectDetectionEvaluator
        evaluate, captured = evaluator.evaluate, []
        # ActivityNet's run_evaluation prints the metrics and returns None: capture them.
        evaluator.evaluate = lambda self: captured.append(evaluate(self)) or captured[-1]
        try:
            takes_logger = "logger" in module.run_evaluation.__code__.co_varnames
            kwargs = {"logger": logging.getLogger("official")} if takes_logger else {}
            with contextlib.redirect_stdout(io.StringIO()):
                module.run_evaluation(*files, **kwargs)
        finally:
            evaluator.evaluate = evaluate
            for f in files:
                f.close()
        return float(captured[-1]["PascalBoxes_Precision/mAP@0.5IOU"])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official_dir", default=os.environ.get("AVA_OFFICIAL_EVAL_DIR", ""))
    parser.add_argument("--keyframes", type=int, default=8000, help="keyframes with GT (~50k/1M rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (best is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt, det, excl = make_case(Path(tmp), args.keyframes, args.seed)
        n_gt = sum(1 for _ in open(gt))
        n_det = sum(1 for _ in open(det))
        print(f"case: {n_gt} GT rows, {n_det} detection rows, {args.keyframes} keyframes, 60 classes, "
              f"3-decimal scores")
        ours_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = ava_metric.evaluate_frame_map(LABEL_MAP, gt, det, excl).mean_ap
            ours_times.append(time.perf_counter() - start)
        rows = [("acar_jax.evaluation.ava_metric", min(ours_times), ours)]
        if args.official_dir:
            run = load_official(args.official_dir)
            start = time.perf_counter()
            official = run(LABEL_MAP, gt, det, excl)
            rows.append(("official", time.perf_counter() - start, official))
    t_ours = rows[0][1]
    print("\n| evaluator | time (s) | time / ours | mAP | abs mAP diff vs ours |\n|---|---|---|---|---|")
    for name, t, m in rows:
        print(f"| {name} | {t:.2f} | {t / t_ours:.1f}x | {m!r} | {abs(m - rows[0][2]):.3g} |")
    if len(rows) == 1:
        print("(official evaluator not timed: pass --official_dir or set AVA_OFFICIAL_EVAL_DIR)")


if __name__ == "__main__":
    main()
