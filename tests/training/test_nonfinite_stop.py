"""A non-finite loss stops training with an error naming the step, and no checkpoint of the corrupt state (or
later) is written; the checkpoints before it stay readable."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from acar_jax.state import checkpoints
from acar_jax.training import loop, train_step
from configs import default
from tests.helpers import tiny_models as h


def test_exploding_run_stops_at_the_first_non_finite_step(tmp_path):
    hooks = loop.Hooks(create_model=lambda config: h.TinyDetector(
        rngs=nnx.Rngs(params=0, dropout=1), num_classes=int(config.model.num_classes)),
        roi_loss=lambda config: h.roi_bce)
    config = default.get_config()
    config.data.root = str(tmp_path / "data")
    config.synthetic.update(num_train_videos=2, num_val_videos=1, keyframes_per_video=6, height=64, width=80,
                            relation_gap=8)
    config.data.short_side = 32
    config.train.batch_size = 4
    config.train.num_steps = 6
    config.checkpoint.every_steps = 1
    config.train.schedule.warmup_steps = 1
    config.train.schedule.milestone_steps = (100, 200)
    config.train.schedule.warmup_lr = 1e30          # step 0 runs at base_lr, step 1 explodes the weights
    with pytest.raises(train_step.NonFiniteLossError, match=r"step 2: non-finite loss") as err:
        loop.train_and_evaluate(config, str(tmp_path / "run"), hooks=hooks)
    assert "no checkpoint of it is written" in str(err.value)
    ckpt_dir = os.path.join(tmp_path, "run", "checkpoints")
    assert sorted(os.listdir(ckpt_dir)) == ["1", "2"]               # the states after steps 0 and 1 only
    last = checkpoints.read_checkpoint(ckpt_dir)
    assert int(last["step"]) == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(last))   # the update of step 2 was not applied
