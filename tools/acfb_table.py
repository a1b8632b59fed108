"""The ACFB seed table: per class group, each chain stage's frame-mAP as mean and spread over the seed runs.

  python tools/acfb_table.py --workdir_root=runs/sweep_acfb

Reads every `<workdir_root>/*/chain/<stage>.json` that a finished stage wrote (acar_jax/training/chain.py) and prints
a Markdown table: one row per stage, one column per group ("mean ± half-range [min, max] (n seeds)") plus
"mAP_long_term" (the mean of the two long-term groups), and one row per bank head of its per-seed difference to
the same seed's ACAR run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tools` importable
    sys.path.insert(0, str(ROOT))

from tools import seed_table  # noqa: E402

STAGE_ORDER = ("acar", "acfb", "default_lfb")
LONG_TERM_GROUPS = ("long_actor", "long_context")   # one class each: their mean is the long-term classes' mAP


def collect(root: str) -> seed_table.Results:
    """stage -> metric ("mAP", "mAP_<group>") -> run directory -> value in percent (the markers hold fractions),
    over the runs that finished that stage."""
    out: seed_table.Results = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "chain", "*.json"))):
        stage = os.path.splitext(os.path.basename(path))[0]
        run = os.path.basename(os.path.dirname(os.path.dirname(path)))
        with open(path) as f:
            metrics = json.load(f)
        for key, value in metrics.items():
            if key.startswith("eval/mAP"):
                out.setdefault(stage, {}).setdefault(key[len("eval/"):], {})[run] = 100 * float(value)
        if all(f"eval/mAP_{g}" in metrics for g in LONG_TERM_GROUPS):        # the figure: both classes
            out[stage].setdefault("mAP_long_term", {})[run] = 100 * sum(
                float(metrics[f"eval/mAP_{g}"]) for g in LONG_TERM_GROUPS) / len(LONG_TERM_GROUPS)
    return out


def with_differences(results: seed_table.Results) -> seed_table.Results:
    """Adds "<stage> - acar" rows: per run (seed), the stage's figure minus the same run's ACAR figure."""
    return seed_table.with_differences(results, "acar") if "acar" in results else dict(results)


def table(results: seed_table.Results) -> str:
    return seed_table.table(results, STAGE_ORDER)


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
