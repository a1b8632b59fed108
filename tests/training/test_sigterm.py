"""SIGTERM during training leaves a checkpoint of the current step (not a periodic one) and a clean exit;
re-running the same command finishes the run."""

import os
import signal

import pytest

from acar_jax.state import checkpoints
from tests.helpers import runs as run_helpers


@pytest.mark.parametrize("model", ["stand-in", pytest.param("detector", marks=pytest.mark.slow)])
def test_sigterm_saves_the_current_step_and_the_rerun_finishes(tmp_path, model):
    workdir, data_root = str(tmp_path / "run"), str(tmp_path / "data")
    cmd = run_helpers.command(workdir, data_root, "--config.train.num_steps=5",
                              "--config.checkpoint.every_steps=100", model=model,
                              pause_after_step=3)
    proc = run_helpers.start_until_paused(cmd, workdir, step=3)
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "3"))   # no periodic save at step 3
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "saved the checkpoint of step 3" in stderr
    ckpt_dir = os.path.join(workdir, "checkpoints")
    assert int(checkpoints.read_checkpoint(ckpt_dir)["step"]) == 3
    assert sorted(os.listdir(ckpt_dir)) == ["3"]

    os.remove(os.path.join(workdir, "paused_at_step_3"))
    run_helpers.run(cmd)
    assert int(checkpoints.read_checkpoint(ckpt_dir)["step"]) == 5
