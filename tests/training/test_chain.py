"""The one-command ACFB chain end to end on a tiny long-term set (slow: four trainings, two bank extractions and
four evaluations of the tiny model, a few steps each): train ACAR -> extract the banks -> train ACFB and the
LFB-style head -> eval; a re-run skips every finished stage; eval of the ACFB checkpoint reads the chain's bank,
and the same eval with the bank deleted is one line naming the manifest and the keys."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests.helpers import runs

TINY = ("--config.synthetic.num_train_videos=2", "--config.synthetic.num_val_videos=1",
        "--config.synthetic.keyframes_per_video=6", "--config.train.batch_size=4", "--config.eval_batch_size=4",
        "--config.train.num_steps=2", "--config.bank.source_num_steps=2", "--config.log_every_steps=1",
        "--config.checkpoint.every_steps=1")


def chain(workdir: str, data_root: str, *extra: str, mode: str = "train_and_eval"):
    cmd = [sys.executable, os.path.join(runs.REPO, "run.py"), "--config=configs/default_acfb.py",
           f"--workdir={workdir}", f"--mode={mode}", f"--config.data.root={data_root}", *TINY, *extra]
    return cmd


@pytest.mark.slow
def test_chain_runs_every_stage_once_and_resumes(tmp_path):
    workdir, data = str(tmp_path / "run"), str(tmp_path / "data")
    first = runs.run(chain(workdir, data))
    for stage in ("acar", "bank_maps", "bank_actors", "acfb", "default_lfb"):
        assert os.path.isfile(os.path.join(workdir, "chain", f"{stage}.json")), stage
    assert "acfb/eval/mAP_long_actor:" in first.stdout and "default_lfb/eval/mAP:" in first.stdout
    with open(os.path.join(workdir, "chain", "acfb.json")) as f:
        acfb = json.load(f)
    assert os.path.isfile(os.path.join(workdir, "acar", "bank", "train_s64", "manifest.json"))
    assert os.path.isfile(os.path.join(workdir, "acar", "bank", "actors_val_s64", "manifest.json"))

    again = runs.run(chain(workdir, data))          # every stage finished: nothing runs again
    assert again.stderr.count("already finished") == 5
    assert f"acfb/eval/mAP: {acfb['eval/mAP']}" in again.stdout

    evaluated = runs.run(chain(workdir, data, mode="eval"))   # the ACFB checkpoint with the chain's val bank
    assert "eval/mAP:" in evaluated.stdout
    shutil.rmtree(os.path.join(workdir, "acar", "bank", "val_s64"))
    proc = runs.subprocess.run(chain(workdir, data, mode="eval"), cwd=runs.REPO, env=runs.env(),
                               capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "val_s64/manifest.json: no bank manifest" in last and "bank.source_workdir=" in last, last
