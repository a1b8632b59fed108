"""Kill -9 after the checkpoint of step 4 exists, re-run the same command: the final parameters, statistics and
optimiser state are bitwise equal to an uninterrupted run of the same length (CPU, deterministic).

The kill point comes from the test entry's pause hook (tests/helpers/loop_entry.py, passed to the loop as its
after-step hook): the run blocks after step 4 and its checkpoint are on disk, so no timing luck is involved.
"""

import os
import signal

import numpy as np
import pytest

from acar_jax.state import checkpoints
from tests.helpers import runs as run_helpers

STEPS = ("--config.train.num_steps=6", "--config.checkpoint.every_steps=2")


MODELS = ["stand-in", pytest.param("detector", marks=pytest.mark.slow)]   # detector: ~75 s on 2 cores


@pytest.mark.parametrize("model", MODELS)
def test_kill9_then_rerun_equals_uninterrupted_run(tmp_path, model):
    data_root = str(tmp_path / "data")
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    run_helpers.run(run_helpers.command(straight, data_root, *STEPS, model=model))

    cmd = run_helpers.command(killed, data_root, *STEPS, model=model, pause_after_step=4)
    proc = run_helpers.start_until_paused(cmd, killed, step=4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert checkpoints.read_checkpoint(os.path.join(killed, "checkpoints"))["step"] == 4
    os.remove(os.path.join(killed, "paused_at_step_4"))
    run_helpers.run(cmd)                                   # the same command resumes from step 4

    a = run_helpers.checkpoint_arrays(straight)
    b = run_helpers.checkpoint_arrays(killed)
    assert int(a["/step"]) == int(b["/step"]) == 6
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
