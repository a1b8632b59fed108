"""run.py with the stand-in detector and a plain BCE loss in place of acar_jax.models.detector / acar_jax.losses,
for loop tests while those are not importable: `python -m tests.stand_in_run <run.py flags>`."""

import sys

import run
from acar_jax import api, train
from tests import train_step_helpers as h


def _model(config, *, seed=None):
    from flax import nnx  # noqa: PLC0415

    seed = int(config.seed) if seed is None else seed
    return h.TinyDetector(rngs=nnx.Rngs(params=seed, dropout=seed + 1), num_classes=int(config.model.num_classes))


if __name__ == "__main__":
    api.create_model = _model
    train.roi_loss_fn = lambda config: h.roi_bce
    run._check_argv(sys.argv)
    run._define_flags()
    run.app.run(run.main)
