"""run.py with --config.data.source=tfds: the synthetic set is packed at start, trained on and evaluated from the
shards, and the final checkpoint equals that of the same run from the frame files, bit for bit (the stand-in
model of the loop tests; tiny data)."""

import os

import numpy as np
import pytest

from tests.helpers import runs as run_helpers

STEPS = ("--config.train.num_steps=4", "--config.checkpoint.every_steps=2", "--config.data.num_frames=16",
         "--config.data.frame_stride=5")


@pytest.mark.slow   # two stand-in runs in subprocesses (~1 min on 2 loaded cores)
def test_run_from_shards_equals_run_from_frames(tmp_path):
    data_root = str(tmp_path / "data")
    frames, packed = str(tmp_path / "frames"), str(tmp_path / "packed")
    run_helpers.run(run_helpers.command(frames, data_root, *STEPS, mode="train_and_eval", model="stand-in"))
    proc = run_helpers.run(run_helpers.command(packed, data_root, *STEPS, "--config.data.source=tfds",
                                               mode="train_and_eval", model="stand-in"))
    assert os.path.isfile(os.path.join(data_root, "tfds_clips", "packing.json")), proc.stderr[-2000:]
    a = run_helpers.checkpoint_arrays(frames)
    b = run_helpers.checkpoint_arrays(packed)
    assert int(a["/step"]) == int(b["/step"]) == 4 and a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    results = [sorted(os.listdir(os.path.join(w, "eval"))) for w in (frames, packed)]
    assert results[0] == results[1] and "results_step4.csv" in results[0]
    with open(os.path.join(frames, "eval", "results_step4.csv")) as f, \
            open(os.path.join(packed, "eval", "results_step4.csv")) as g:
        assert f.read() == g.read()
