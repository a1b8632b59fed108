"""Bank extraction in a subprocess for the kill -9 and 8-device tests:

  python -m tests.helpers.bank_entry WORKDIR DATA_ROOT BANK_DIR [--kill_after_videos=N]

Tiny config (tests/helpers/runs.py's data sizes), the real detector. When WORKDIR holds no checkpoint, the fresh
model (seed 0) is saved there as step 0, so every run of a test extracts from the same weights. With
--kill_after_videos the process SIGKILLs itself right after writing its N-th video file.
"""

from __future__ import annotations

import os
import signal
import sys

from acar_jax.bank.extraction import extract_banks
from acar_jax.launch.prepare import prepare_data
from acar_jax.state import checkpoints
from acar_jax.training.loop import setup_model_state
from tests.helpers import configs


def tiny_config(data_root: str, bank_dir: str):
    """The default job on 2 + 1 videos of 3 keyframes at 64 x 80, its banks under `bank_dir`."""
    config = configs.tiny_synthetic(data_root, num_train_videos=2, num_val_videos=1, keyframes_per_video=3,
                                    height=64, width=80, relation_gap=8)
    config.data.short_side, config.data.eval_scales = 64, (64,)
    config.bank.dir = bank_dir
    return config


def main(argv: list[str]) -> None:
    workdir, data_root, bank_dir = argv[1:4]
    kill_after = int(argv[4].split("=", 1)[1]) if len(argv) > 4 else 0
    config = tiny_config(data_root, bank_dir)
    ckpt = checkpoints.Checkpointer(workdir, every_steps=1, max_to_keep=1)
    if ckpt.latest_step() is None:
        prepare_data(config)
        ckpt.save(setup_model_state(config).state, force=True)
    ckpt.close()
    done = []

    def after_video(video: str) -> None:
        done.append(video)
        if kill_after and len(done) >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    extract_banks(config, workdir, after_video=after_video)


if __name__ == "__main__":
    main(sys.argv)
