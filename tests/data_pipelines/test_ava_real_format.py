"""The paper config on files in the official formats, as distributed (tests/helpers/ava_corpus.py): LFB proposal
files with ids outside the 60 and -1 rows, zero-padded timestamps, ids beginning with "-" / "_", CRLF, trailing
blank lines, a 100-box keyframe, six frame sizes at height 340.

Fast: the input side of `configs/ava_slowfast_r50_acar.py` (records, train batches, eval batches) with every
data field as the config has it but `short_side` / `eval_scales`. Slow: `run.py
--config=configs/ava_slowfast_r50_acar.py` trains 2 steps and evaluates, overriding only model size, steps, batch
size, short side and init_from.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from configs import ava_slowfast_r50_acar
from data_pipelines import ava_files, clips
from tests.helpers import ava_corpus, paths

REPO = str(paths.REPO)
CONFIG = os.path.join(REPO, "configs", "ava_slowfast_r50_acar.py")
ONLY_SIZE_STEPS_BATCH_SCALE_INIT = (
    "--config.model.backbone.layers=(1,1,1,1)", "--config.model.backbone.width=8",
    "--config.model.head.reduce_dim=16", "--config.model.head.hidden_dim=8",
    "--config.train.num_steps=2", "--config.train.batch_size=2", "--config.eval_batch_size=2",
    "--config.data.short_side=64", "--config.data.eval_scales=(64,)", "--config.checkpoint.init_from=",
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working directory holding the corpus at the config's relative data.root, data/ava."""
    cwd = tmp_path_factory.mktemp("ava_workspace")
    ava_corpus.write_corpus(cwd / "data" / "ava")
    return cwd


def test_r50_config_input_side_on_the_real_format_corpus(workspace):
    data = ava_slowfast_r50_acar.get_config().data
    data.root = str(workspace / "data" / "ava")       # the config's "data/ava", from the workspace
    data.short_side, data.eval_scales = 64, (64,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = ava_files.load_keyframe_records(data, "train")
        val = ava_files.load_keyframe_records(data, "val")
    unknown = [str(w.message) for w in caught if issubclass(w.category, ava_files.UnknownActionWarning)]
    assert len(unknown) == 3 and all("skipped" in m for m in unknown)     # train GT, both proposal files

    train_input = clips.TrainInput(train, data, global_batch_size=2, seed=0, num_classes=60)
    assert {it.n_max for it in train_input.items} == {8, 104}             # the 100-box keyframe is not split
    batches = [b for _, b in zip(range(2), train_input.iterator(), strict=False)]
    assert [b["clips"].shape for b in batches] == [(2, 32, 64, 85, 3)] * 2
    assert all(b["box_mask"].sum(1).tolist() == [4, 4] for b in batches)

    seen, sizes = {}, set()
    for batch in clips.eval_batches(val, data, batch_size=2, scale=64, flip=False):
        for i in np.flatnonzero(batch["clip_mask"]):
            seen[(batch["video_id"][i], int(batch["timestamp"][i]))] = int(batch["box_mask"][i].sum())
            sizes.add(tuple(int(v) for v in batch["valid_hw"][i]))
    assert seen[ava_corpus.CROWD_VAL] == ava_corpus.CROWD and ava_corpus.EXCLUDED not in seen
    assert len(seen) == 2 * len(ava_corpus.VAL_VIDEOS) - 1
    assert sizes == {(64, 85), (64, 113), (64, 64), (85, 64), (64, 96), (64, 128)}     # six frame sizes


@pytest.mark.slow
def test_run_py_trains_and_evaluates_the_r50_config_on_the_real_format_corpus(workspace):
    """Minutes on a 2-core CPU: a train step and six eval shapes of 32-frame clips compile."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), f"--config={CONFIG}",
                           f"--workdir={workspace / 'run'}", *ONLY_SIZE_STEPS_BATCH_SCALE_INIT],
                          cwd=workspace, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "Traceback" not in proc.stderr
    assert re.search(r"keyframes per N_max box bucket \{8: 4, 104: 1\} \(most crowded keyframe: 100", proc.stderr)
    mean_ap = float(re.search(r"^eval/mAP: (\S+)$", proc.stdout, re.M).group(1))
    assert 0.0 <= mean_ap <= 1.0
    with open(workspace / "run" / "eval" / "results_step2.csv") as f:
        rows = [line.split(",") for line in f.read().splitlines() if line]
    keyframes = {(r[0], int(r[1])) for r in rows}
    assert len(keyframes) == 2 * len(ava_corpus.VAL_VIDEOS) - 1 and ava_corpus.EXCLUDED not in keyframes
    crowd = [r for r in rows if (r[0], int(r[1])) == ava_corpus.CROWD_VAL]
    assert len(crowd) == ava_corpus.CROWD * 60 and len({tuple(r[2:6]) for r in crowd}) == ava_corpus.CROWD
