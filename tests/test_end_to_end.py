"""The default job, shortened (tiny frames, few steps), through `run.py` end to end: synthetic data generated,
training, checkpoint, TensorBoard logs, evaluation with the AVA result CSV and its frame-mAP; then
`--mode=eval` on the same workdir reproduces the mAP from the checkpoint."""

import glob
import os
import re

from tests.helpers import runs as run_helpers


def _metric(stdout: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}: (\S+)$", stdout, re.M)
    assert match, f"{name} not printed:\n{stdout}"
    return float(match.group(1))


def test_default_job_shortened_trains_evaluates_and_reevaluates(tmp_path):
    workdir, data_root = str(tmp_path / "run"), str(tmp_path / "data")
    cmd = run_helpers.command(workdir, data_root, "--config.train.num_steps=4", "--config.checkpoint.every_steps=2",
                              mode="train_and_eval")
    out = run_helpers.run(cmd).stdout
    assert os.path.isfile(os.path.join(data_root, "ava_train_v2.2.csv"))          # dataset generated
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))               # TensorBoard
    train_map = _metric(out, "eval/mAP")
    assert 0.0 <= train_map <= 1.0
    csv = os.path.join(workdir, "eval", "results_step4.csv")
    with open(csv) as f:
        rows = f.read().splitlines()
    assert rows and len(rows[0].split(",")) == 8                                   # video,ts,x1,y1,x2,y2,action,score
    assert _metric(out, "train/loss") > 0

    out = run_helpers.run(run_helpers.command(workdir, data_root, "--config.train.num_steps=4",
                                              mode="eval")).stdout
    assert _metric(out, "eval/mAP") == train_map
