"""run.py's command line with test hooks: `python -m tests.helpers.loop_entry [--stand_in] [--pause_after_step=K]
<run.py flags>`.

--stand_in: the tiny stand-in detector and a plain BCE loss instead of the real detector and loss (fast tests of
the loop's own behaviour). --pause_after_step=K: after step K and every checkpoint started so far are done, write
`workdir/paused_at_step_K` and block until a signal arrives, so a test can SIGKILL or SIGTERM the run at a known
point without timing luck.
"""

from __future__ import annotations

import os
import time

from absl import flags
from flax import nnx

import run
from acar_jax.training.loop import Hooks, TrainLoop
from tests.helpers import tiny_models

_STAND_IN = flags.DEFINE_bool("stand_in", False, "use the tiny stand-in detector and a plain BCE loss")
_PAUSE_AFTER_STEP = flags.DEFINE_integer("pause_after_step", -1, "block after this step until a signal")


def _stand_in_model(config):
    seed = int(config.seed)
    return tiny_models.TinyDetector(rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                                    num_classes=int(config.model.num_classes))


def _pause(step: int, loop: TrainLoop) -> None:
    if step != _PAUSE_AFTER_STEP.value:
        return
    loop.checkpointer.wait()
    with open(os.path.join(loop.workdir, f"paused_at_step_{step}"), "w") as f:
        f.write(str(os.getpid()))
    while not loop.stop:   # SIGKILL ends us here; SIGTERM / SIGINT resume the loop, which saves and stops
        time.sleep(0.05)


def _hooks() -> Hooks:
    if _STAND_IN.value:
        return Hooks(create_model=_stand_in_model, roi_loss=lambda config: tiny_models.roi_bce, after_step=_pause)
    return Hooks(after_step=_pause)


if __name__ == "__main__":
    run.cli(hooks_factory=_hooks)
