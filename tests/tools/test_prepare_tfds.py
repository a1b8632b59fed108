"""tools/prepare_tfds.py, as a user runs it: packs the train split of a tiny synthetic set, says so again on a
re-run without rewriting it, and refuses another sampling in the same folder with one line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import paths

ROOT = paths.REPO
TINY = ("--config.synthetic.num_train_videos=1", "--config.synthetic.num_val_videos=1",
        "--config.synthetic.keyframes_per_video=3", "--config.synthetic.height=64",
        "--config.synthetic.width=80", "--config.synthetic.relation_gap=8")


def _prepare(root, *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tools" / "prepare_tfds.py"), f"--config.data.root={root}", *TINY, *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.slow   # three interpreter starts with TensorFlow (~10 s on 2 loaded cores)
def test_prepare_then_rerun_then_other_sampling(tmp_path):
    root = tmp_path / "data"
    first = _prepare(root, "--split=train", "--keyframes_per_shard=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "train: 3 keyframes" in first.stdout
    shards = sorted(p.name for p in (root / "tfds_clips").iterdir() if ".array_record-" in p.name)
    assert shards == ["acar_clips-train.array_record-00000-of-00002", "acar_clips-train.array_record-00001-of-00002"]
    stamp = (root / "tfds_clips" / shards[0]).stat().st_mtime_ns
    again = _prepare(root, "--split=train", "--keyframes_per_shard=2")
    assert again.returncode == 0 and "already prepared" in again.stderr
    assert (root / "tfds_clips" / shards[0]).stat().st_mtime_ns == stamp
    other = _prepare(root, "--split=val", "--config.data.frame_stride=4")
    assert other.returncode == 1
    assert other.stderr.strip().splitlines()[-1].startswith("prepare_tfds: config.data.frame_stride=4, but the shards")
