"""Mean and spread over seeds of finished runs' frame-mAP, per class group and per class, with paired differences.

  python tools/seed_table.py --workdir_root=runs/sweep_default_heads --baseline=type=linear
  python tools/seed_table.py --run acar=runs/acar_s0,runs/acar_s1,runs/acar_s2 \
      --run linear=runs/linear_s0,runs/linear_s1,runs/linear_s2 --baseline=linear --classes=8,9

Why: one run of the default job does not reproduce on another machine (XLA's CPU code, and so the float
rounding and then training, differ by machine), so results are published as mean and spread over seeds.
Each run's figures come from its latest `eval/step<N>_per_class_ap.csv` (what the evaluator wrote): "mAP" is
the mean AP over the classes with ground truth, "mAP_<group>" the same within a class group (the evaluator's
definitions). With `--workdir_root`, runs are the sweep's sub-directories (tools/sweep.py names them
`<index>_<key>=<value>_...`), grouped into one row per setting with the `seed=<n>` part removed. A cell is
"mean ± half-range [min, max] (n=runs)"; a `<row> - <baseline>` row holds the per-seed differences, pairing runs
of the same seed (sweep) or the same position in the `--run` lists.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import re

import numpy as np

Results = dict[str, dict[str, dict[str, float]]]   # row -> metric -> seed key -> value

_SEED = re.compile(r"(^|_)seed=(-?\d+)")


def latest_class_table(run_dir: str) -> str:
    """The per-class AP CSV of the run's last evaluated step; an error naming the run when it has none."""
    tables = glob.glob(os.path.join(run_dir, "eval", "step*_per_class_ap.csv"))
    if not tables:
        raise FileNotFoundError(f"{run_dir}: no eval/step<N>_per_class_ap.csv (the run has not been evaluated)")
    return max(tables, key=lambda p: int(re.search(r"step(\d+)_per_class_ap", os.path.basename(p)).group(1)))


def run_metrics(run_dir: str, classes: tuple[int, ...] = ()) -> dict[str, float]:
    """{"mAP": .., "mAP_<group>": .., "AP <id> <name>": ..} of a run, as percentages."""
    path = latest_class_table(run_dir)
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["ap"] not in ("", "nan")]
    if not rows:
        raise ValueError(f"{path}: no class with an AP")
    out = {"mAP": 100 * float(np.mean([float(r["ap"]) for r in rows]))}
    for group in dict.fromkeys(r["group"] for r in rows):
        out[f"mAP_{group}"] = 100 * float(np.mean([float(r["ap"]) for r in rows if r["group"] == group]))
    for row in rows:
        if int(row["class_id"]) in classes:
            out[f"AP {row['class_id']} {row['name']}"] = 100 * float(row["ap"])
    return out


def add_run(results: Results, row: str, seed_key: str, metrics: dict[str, float]) -> None:
    for metric, value in metrics.items():
        results.setdefault(row, {}).setdefault(metric, {})[seed_key] = value


def collect_sweep(root: str, classes: tuple[int, ...] = ()) -> Results:
    """One row per setting of a tools/sweep.py root (its run directory names without the index and seed)."""
    results: Results = {}
    for run_dir in sorted(d for d in glob.glob(os.path.join(root, "*")) if os.path.isdir(d)):
        name = os.path.basename(run_dir).split("_", 1)[-1]
        seed = _SEED.search(name)
        setting = _SEED.sub("", name).strip("_") or "runs"
        add_run(results, setting, seed.group(2) if seed else name, run_metrics(run_dir, classes))
    return results


def collect_lists(runs: list[str], classes: tuple[int, ...] = ()) -> Results:
    """Rows from `label=dir,dir,...` arguments; runs of different labels pair by position."""
    results: Results = {}
    for spec in runs:
        label, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            raise ValueError(f"--run: expected LABEL=DIR[,DIR...], got {spec!r}")
        for i, run_dir in enumerate(dirs.split(",")):
            add_run(results, label, str(i), run_metrics(run_dir, classes))
    return results


def with_differences(results: Results, baseline: str) -> Results:
    """Adds "<row> - <baseline>" rows: per seed, the row's figure minus the baseline run of the same seed."""
    if baseline not in results:
        raise KeyError(f"baseline {baseline!r} is not a row; rows: {sorted(results)}")
    out = dict(results)
    base = results[baseline]
    for row in [r for r in results if r != baseline]:
        out[f"{row} - {baseline}"] = {
            metric: {seed: v - base[metric][seed] for seed, v in values.items() if seed in base.get(metric, {})}
            for metric, values in results[row].items()}
    return out


def spread_cell(values: np.ndarray) -> str:
    """"mean ± half-range [min, max] (n=...)"; "-" when there is no value."""
    values = values[~np.isnan(values)]
    if not values.size:
        return "-"
    return (f"{values.mean():.2f} ± {(values.max() - values.min()) / 2:.2f} "
            f"[{values.min():.2f}, {values.max():.2f}] (n={values.size})")


def table(results: Results, row_order: tuple[str, ...] = ()) -> str:
    """Markdown: one row per setting, columns mAP, then the groups in first-seen order, then classes."""
    rows = [r for r in row_order if r in results] + [r for r in results if r not in row_order]
    columns = list(dict.fromkeys(m for r in rows for m in results[r]))
    columns.sort(key=lambda m: (m != "mAP", not m.startswith("mAP")))       # stable: keeps first-seen order
    lines = ["| run | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for row in rows:
        cells = [spread_cell(np.asarray(list(results[row].get(m, {}).values()), dtype=float)) for m in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_classes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise SystemExit(f"--classes: expected comma-separated class ids, got {text!r}") from None


def main() -> None:
    """argparse, not absl flags: tools/sweep.py defines --workdir_root too, and both import in one test process."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir_root", help="a tools/sweep.py root: one row per setting over its seeds")
    parser.add_argument("--run", action="append", default=[], help="LABEL=DIR[,DIR...] (repeatable)")
    parser.add_argument("--baseline", default="", help="row to subtract per seed (e.g. the Linear head's)")
    parser.add_argument("--classes", default="", help="class ids to add as per-class AP columns, e.g. 7,8,9")
    args = parser.parse_args()
    classes = parse_classes(args.classes)
    if bool(args.workdir_root) == bool(args.run):
        raise SystemExit("give either --workdir_root or --run")
    results = collect_sweep(args.workdir_root, classes) if args.workdir_root else collect_lists(args.run, classes)
    if not results:
        raise SystemExit(f"no runs under {args.workdir_root}/*")
    if args.baseline:
        results = with_differences(results, args.baseline)
    print(table(results))


if __name__ == "__main__":
    main()
