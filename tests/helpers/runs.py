"""Shared command lines for the tests that run training end to end in a subprocess (tiny data, tiny model)."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from tests.helpers import paths

REPO = str(paths.REPO)
_CACHE_DIR = tempfile.mkdtemp(prefix="acar_jax_test_jit_cache_")   # one per test process, removed at exit
atexit.register(shutil.rmtree, _CACHE_DIR, True)

# A few seconds of training on 2 CPU cores: 12 train keyframes of 64x80 (the ACAR head needs a feature map of
# at least 3x3 for its valid 3x3 conv: 48 pixels at stride 16; actors 8 px apart so that they fit), 8 frames,
# batch 4.
TINY_OVERRIDES = (
    "--config.synthetic.num_train_videos=2", "--config.synthetic.num_val_videos=1",
    "--config.synthetic.keyframes_per_video=6", "--config.synthetic.height=64", "--config.synthetic.width=80",
    "--config.synthetic.relation_gap=8",
    "--config.data.short_side=64", "--config.data.eval_scales=(64,)", "--config.train.batch_size=4",
    "--config.eval_batch_size=4", "--config.log_every_steps=2",
)


def entry_point(model: str, pause_after_step: int | None = None) -> list[str]:
    """"detector": run.py itself; "stand-in": run.py's command line with the tiny stand-in detector and a plain
    BCE loss (tests/helpers/loop_entry.py), for fast tests of the loop's own behaviour. `pause_after_step`: the
    run blocks after that step (loop_entry's pause hook) until a signal."""
    if model not in ("detector", "stand-in"):
        raise ValueError(f"model must be 'detector' or 'stand-in', got {model!r}")
    if model == "detector" and pause_after_step is None:
        return [sys.executable, os.path.join(REPO, "run.py")]
    cmd = [sys.executable, "-m", "tests.helpers.loop_entry"]
    cmd += ["--stand_in"] if model == "stand-in" else []
    return cmd + ([f"--pause_after_step={pause_after_step}"] if pause_after_step is not None else [])


def command(workdir: str, data_root: str, *overrides: str, mode: str = "train", model: str = "detector",
            pause_after_step: int | None = None) -> list[str]:
    return entry_point(model, pause_after_step) + [
        f"--workdir={workdir}", f"--mode={mode}", f"--config.data.root={data_root}", *TINY_OVERRIDES, *overrides]


def env(**extra: str) -> dict[str, str]:
    """The subprocess environment: CPU, the repo importable, and a persistent compilation cache so the runs of
    one test reuse each other's compiled programs (same shapes)."""
    out = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, JAX_COMPILATION_CACHE_DIR=_CACHE_DIR,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
               TF_CPP_MIN_LOG_LEVEL="2", **extra)
    out.pop("XLA_FLAGS", None)
    return out


def run(cmd: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=env(**extra_env), capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    return proc


def start_until_paused(cmd: list[str], workdir: str, step: int) -> subprocess.Popen:
    """Starts `cmd` (made with `pause_after_step=step`) and returns once the run is blocked after that step."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = os.path.join(workdir, f"paused_at_step_{step}")
    deadline = time.monotonic() + 600
    while not os.path.exists(marker):
        if proc.poll() is not None:
            raise AssertionError(f"run exited ({proc.returncode}) before step {step}:\n{proc.stderr.read()[-5000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"run did not reach step {step} in 600 s")
        time.sleep(0.1)
    return proc


def checkpoint_arrays(workdir: str) -> dict[str, np.ndarray]:
    """The latest checkpoint of a run as {"/path/to/leaf": array}: two runs' states compare key by key."""
    from acar_jax.state import checkpoints  # noqa: PLC0415 (the rest of this module only starts processes)

    def flat(tree, prefix=""):
        if isinstance(tree, dict):
            return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}/{key}").items()}
        return {prefix: np.asarray(tree)}

    return flat(checkpoints.read_checkpoint(os.path.join(workdir, "checkpoints")))
