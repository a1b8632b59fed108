"""Bank storage: bytes per entry, the projected size of an AVA train bank, and the read throughput.

    python benchmarks/bank_io.py [--grid 14 27] [--dim 512] [--dtype float16] [--entries 400]
                                 [--ava_train_csv ava_train_v2.2.csv] [--keyframes 210634] [--actors 2.8]
                                 [--window_radius 10]

Writes `--entries` random entries of an R50 ACFB bank (first-order maps of a 256 x 455 frame: 14 x 27 x 512)
as a bank video file, reads them back through tf.data (TFRecord parse + map decode to numpy) and as +-radius s
windows through the record index (what training does: `--window_radius`), and prints a table. The projection
multiplies the measured bytes per entry by the AVA train box count: counted from `--ava_train_csv` (distinct
video, second, box) when given, else `--keyframes x --actors` (assumed figures: say so when you quote them).
Read throughput depends on the disk and on the machine's load.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_pipelines import bank_files  # noqa: E402


def count_boxes(path: str) -> int:
    with open(path) as f:
        return len({(r[0], r[1], *r[2:6]) for r in csv.reader(f) if r})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, nargs=2, default=(14, 27))
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dtype", default="float16", choices=bank_files.STORAGE_DTYPES)
    parser.add_argument("--entries", type=int, default=400)
    parser.add_argument("--ava_train_csv", default="")
    parser.add_argument("--keyframes", type=int, default=210634)
    parser.add_argument("--actors", type=float, default=2.8)
    parser.add_argument("--window_radius", type=int, default=10, help="seconds each side of a window read")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    per_keyframe = 4
    entries = [bank_files.Entry(902 + t, rng.uniform(0, 1, (per_keyframe, 4)).astype(np.float32),
                                np.abs(rng.standard_normal((per_keyframe, *args.grid, args.dim))).astype(np.float32))
               for t in range(args.entries // per_keyframe)]
    n = len(entries) * per_keyframe
    with tempfile.TemporaryDirectory() as root:
        bank_files.start_bank(root, fingerprint="bench", split="train", dtype=args.dtype, videos=["bench"])
        t0 = time.perf_counter()
        path = bank_files.write_video(root, "bench", entries, args.dtype)
        write_s = time.perf_counter() - t0
        size = os.path.getsize(path)
        bank_files.mark_complete(root)
        reader = bank_files.BankReader(root)
        t0 = time.perf_counter()
        got = reader.read_video("bench")
        read_s = time.perf_counter() - t0
        assert sum(e.maps.shape[0] for e in got.values()) == n
        # Windows through the record index: +-radius s around each of a few keyframes, a fresh reader each
        # (no cache), as shuffled training reads them.
        radius = args.window_radius
        centres = list(got)[radius::max(1, 2 * radius + 1)][:4] or list(got)[:1]
        t0 = time.perf_counter()
        window_entries = 0
        for centre in centres:
            part = bank_files.BankReader(root).read_seconds("bench", range(centre - radius, centre + radius + 1))
            window_entries += sum(e.maps.shape[0] for e in part.values())
        window_s = time.perf_counter() - t0
    boxes = count_boxes(args.ava_train_csv) if args.ava_train_csv else int(args.keyframes * args.actors)
    source = args.ava_train_csv or f"assumed {args.keyframes} keyframes x {args.actors} actors"
    per_entry = size / n
    rows = [("entry map", f"{args.grid[0]}x{args.grid[1]}x{args.dim} {args.dtype}"),
            ("bytes per entry (file)", f"{per_entry:,.0f}"),
            ("raw map bytes", f"{int(np.prod(args.grid)) * args.dim * np.dtype(reader.dtype).itemsize:,}"),
            ("AVA train boxes", f"{boxes:,} ({source})"),
            ("projected AVA train bank", f"{per_entry * boxes / 1e9:,.1f} GB"),
            ("write", f"{n / write_s:,.0f} entries/s ({size / write_s / 1e6:,.0f} MB/s)"),
            ("read (tf.data parse + decode)", f"{n / read_s:,.0f} entries/s ({size / read_s / 1e6:,.0f} MB/s)"),
            (f"window read (index, +-{radius} s)", f"{len(centres) / window_s:,.1f} windows/s of "
             f"{window_entries / len(centres):,.0f} entries ({window_entries * per_entry / window_s / 1e6:,.0f} MB/s)")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
