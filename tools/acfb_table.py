"""The ACFB seed table: per class group, each chain stage's frame-mAP as mean and spread over the seed runs.

  python tools/acfb_table.py --workdir_root=runs/sweep_acfb

Reads every `<workdir_root>/*/chain/<stage>.json` that a finished stage wrote (acar_jax/acfb_chain.py) and prints
a Markdown table: one row per stage, one column per group ("mean ± half-range [min, max] (n seeds)"), and one
row per bank head of its per-seed difference to the same seed's ACAR run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

STAGE_ORDER = ("acar", "acfb", "default_lfb")


def collect(root: str) -> dict[str, dict[str, dict[str, float]]]:
    """stage -> metric ("mAP", "mAP_<group>") -> run directory -> value, over the runs that finished that stage."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "chain", "*.json"))):
        stage = os.path.splitext(os.path.basename(path))[0]
        run = os.path.basename(os.path.dirname(os.path.dirname(path)))
        with open(path) as f:
            metrics = json.load(f)
        for key, value in metrics.items():
            if key.startswith("eval/mAP"):
                out.setdefault(stage, {}).setdefault(key[len("eval/"):], {})[run] = float(value)
    return out


def with_differences(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Adds "<stage> - acar" rows: per run (seed), the stage's figure minus the same run's ACAR figure."""
    out = dict(results)
    base = results.get("acar", {})
    for stage in [s for s in results if s != "acar"]:
        out[f"{stage} - acar"] = {
            metric: {run: v - base[metric][run] for run, v in values.items() if run in base.get(metric, {})}
            for metric, values in results[stage].items()}
    return out


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    stages = [s for s in STAGE_ORDER if s in results] + sorted(set(results) - set(STAGE_ORDER))
    columns = sorted({m for s in stages for m in results[s]}, key=lambda m: (m != "mAP", m))
    lines = ["| stage | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for stage in stages:
        cells = []
        for metric in columns:
            values = np.asarray(list(results[stage].get(metric, {}).values()))
            cells.append("-" if not values.size else
                         f"{values.mean():.2f} ± {(values.max() - values.min()) / 2:.2f} "
                         f"[{values.min():.2f}, {values.max():.2f}] (n={values.size})")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """argparse, not absl flags: tools/sweep.py defines --workdir_root too, and both modules import in one test
    process."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir_root", required=True, help="the sweep's workdir root (one chain run per seed)")
    root = parser.parse_args().workdir_root
    results = collect(root)
    if not results:
        raise SystemExit(f"no finished chain stages under {root}/*/chain/")
    print(table(with_differences(results)))


if __name__ == "__main__":
    main()
