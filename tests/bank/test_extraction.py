"""Bank extraction end to end (tiny synthetic data, the real detector, a step-0 checkpoint), in subprocesses:
an uninterrupted run, a run killed with SIGKILL after its first video and then re-run, and a run on 8 simulated
devices give byte-identical files; what the bank holds is the model's first-order maps of every keyframe."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from acar_jax.bank import bank_records, extraction
from acar_jax.bank.entries import detector_bank_maps
from acar_jax.state import checkpoints
from acar_jax.training.loop import setup_model_state
from data_pipelines import bank_files
from tests.helpers import bank_entry, runs


def extract(workdir: str, data_root: str, bank_dir: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tests.helpers.bank_entry", workdir, data_root, bank_dir, *extra]
    return subprocess.run(cmd, cwd=runs.REPO, env=runs.env(**env), capture_output=True, text=True, timeout=900)


def bank_tree(bank_dir: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), bank_dir) for d, _, fs in os.walk(bank_dir) for f in fs)


def assert_same_banks(a: str, b: str) -> None:
    assert bank_tree(a) == bank_tree(b)
    for rel in bank_tree(a):
        assert filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False), rel


@pytest.mark.slow
def test_extraction_resumes_after_kill_and_is_device_count_independent(tmp_path):
    data, work = str(tmp_path / "data"), str(tmp_path / "acar")
    full, resumed, eight = (str(tmp_path / n) for n in ("full", "resumed", "eight"))
    proc = extract(work, data, full)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = extract(work, data, resumed, "--kill_after_videos=1")
    assert killed.returncode == -9, killed.stderr[-3000:]
    train_bank = os.path.join(resumed, "train_s64")
    assert len(bank_files.finished_videos(train_bank)) == 1
    with pytest.raises(bank_files.BankError, match="not complete"):
        bank_files.BankReader(train_bank)
    proc = extract(work, data, resumed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_banks(full, resumed)

    proc = extract(work, data, eight, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_banks(full, eight)

    # What the bank holds: the restored model's first-order maps, cropped, in float16, for every keyframe.
    config = bank_entry.tiny_config(data, full)
    model = setup_model_state(config)
    ckpt = checkpoints.Checkpointer(work, every_steps=1, max_to_keep=1)
    model.state = ckpt.restore(model.state)
    ckpt.close()
    net = nnx.merge(model.graphdef, model.state.params, model.state.batch_stats, model.rng_state)
    fn = lambda c, b, v: tuple(np.asarray(x) for x in detector_bank_maps(net, *map(jnp.asarray, (c, b, v))))  # noqa
    records = bank_records.bank_records(config.data, "val", "gt")
    want = extraction.extract_video(records, config.data, fn, batch_size=2, scale=64)
    got = bank_files.BankReader(os.path.join(full, "val_s64")).read_video(records[0].video_id)
    assert sorted(got) == [r.timestamp for r in records]
    for e in want:
        assert e.maps.shape[0] == len(got[e.timestamp].boxes) > 0
        np.testing.assert_allclose(got[e.timestamp].maps.astype(np.float32), e.maps, rtol=1e-3, atol=1e-3)


def test_detections_csv_with_missing_seconds_is_named(tmp_path):
    """A bank from a user's detections CSV needs every second between a video's first and last rows."""
    root = tmp_path
    (root / "labels.pbtxt").write_text('item {\n  name: "stand"\n  id: 1\n}\n')
    (root / "frames" / "vidA").mkdir(parents=True)
    for i in range(1, 200):
        (root / "frames" / "vidA" / f"image_{i:06d}.jpg").write_bytes(b"")
    csv = root / "dets.csv"
    csv.write_text("vidA,0902,0.1,0.1,0.5,0.5,,0.99\nvidA,0905,0.1,0.1,0.5,0.5,,0.98\n")
    config = bank_entry.tiny_config(str(root), "")
    config.data.label_map = "labels.pbtxt"
    config.data.dataset = "ava"
    with pytest.raises(ValueError, match=r"dets.csv: video 'vidA' has no boxes at seconds \[903, 904\]"):
        bank_records.bank_records(config.data, "val", str(csv))
    with pytest.raises(FileNotFoundError, match=r"bank.boxes: .*nope.csv: no such detections CSV"):
        bank_records.bank_records(config.data, "val", "nope.csv")


def test_cli_extract_bank_without_checkpoint_is_one_line(tmp_path):
    proc = subprocess.run(runs.command(str(tmp_path / "empty"), str(tmp_path / "data"), mode="extract_bank"),
                          cwd=runs.REPO, env=runs.env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("--mode=extract_bank: no checkpoint in ")
