"""benchmarks/step_breakdown.py --torch prints its PyTorch rows (they ran in the XLA process and segfaulted)."""

import os
import subprocess
import sys

import pytest

from tests.helpers import paths

REPO = str(paths.REPO)


@pytest.mark.slow   # a tiny-model step compile plus a PyTorch child: ~40 s on 2 cores
def test_torch_rows_come_from_a_child_process_and_the_script_exits_cleanly():
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "step_breakdown.py"), "--config", "configs/default.py",
         "--torch", "--batch", "2", "--frames", "8", "--height", "64", "--width", "96", "--boxes", "2", "--steps",
         "1", "--matmul", "256"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line[:24].strip(): line[24:].split() for line in proc.stdout.splitlines()}
    for part in ("train step", "torch backbone fwd", "torch backbone fwd+bwd"):
        assert part in rows, proc.stdout
        assert float(rows[part][0]) >= 0
