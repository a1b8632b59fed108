"""acar_jax.api.load_model: weights of a run's checkpoint, logits equal to the model's own forward, predict =
the loss's prediction function, inputs checked by name, other model shapes refused (stand-in detector)."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from acar_jax import api
from acar_jax.core import parallel
from acar_jax.core.batch import TRAIN_KEYS
from acar_jax.models.predictions import predict_scores
from acar_jax.state import checkpoints, train_state
from acar_jax.training import optim, train_step
from configs import default
from tests.helpers import paths
from tests.helpers import tiny_models as h

REPO = str(paths.REPO)


def create_stand_in(config, *, seed=None):
    seed = int(config.seed) if seed is None else seed
    return h.TinyDetector(rngs=nnx.Rngs(params=seed, dropout=seed + 1), num_classes=int(config.model.num_classes))


@pytest.fixture
def stand_in():
    """The model factory load_model builds with in these tests."""
    return create_stand_in


def _trained_run(tmp_path, config) -> tuple[str, train_state.TrainState]:
    """A workdir with the checkpoint of 2 SGD steps of the stand-in detector."""
    tx = optim.gradient_transformation(config.train.optimizer)
    graphdef, rng_state, state = train_state.create_train_state(create_stand_in(config, seed=7), tx)
    mesh = parallel.make_mesh()
    state, rng_state = parallel.replicate(state, mesh), parallel.replicate(rng_state, mesh)
    step = train_step.make_train_step(graphdef, tx, mesh, roi_loss_fn=h.roi_bce)
    for s in range(2):
        batch = h.make_batch(s, 2, 4, [2, 3])
        batch["labels"] = np.zeros((2, 4, config.model.num_classes), np.float32)
        state, _ = step(state, rng_state, parallel.shard_batch(batch, mesh, TRAIN_KEYS), np.float32(0.1))
    ckpt = checkpoints.Checkpointer(str(tmp_path), every_steps=1, max_to_keep=1)
    ckpt.save(state, force=True)
    ckpt.close()
    return str(tmp_path), jax.device_get(state)


def test_logits_are_the_checkpoint_models_forward(tmp_path, stand_in):
    config = default.get_config()
    workdir, state = _trained_run(tmp_path, config)
    model = api.load_model(config, workdir, create=stand_in)
    batch = h.make_batch(5, 3, 4, [1, 4, 0])
    inputs = [batch[k] for k in ("clips", "boxes", "box_mask", "valid_hw")]
    want = h.TinyDetector(rngs=nnx.Rngs(params=0, dropout=1), num_classes=9)
    nnx.update(want, state.params, state.batch_stats)
    np.testing.assert_allclose(np.asarray(model.logits(*inputs)), np.asarray(want(*inputs, train=False)),
                               rtol=1e-6, atol=1e-6)
    # the same through a config file path and the checkpoints dir itself
    again = api.load_model(os.path.join(REPO, "configs", "default.py"), os.path.join(workdir, "checkpoints"),
                           create=stand_in)
    np.testing.assert_array_equal(np.asarray(again.logits(*inputs)), np.asarray(model.logits(*inputs)))


def test_predict_is_the_prediction_function_of_the_logits(tmp_path, stand_in):
    config = default.get_config()
    workdir, _ = _trained_run(tmp_path, config)
    model = api.load_model(config, workdir, create=stand_in)
    batch = h.make_batch(5, 2, 4, [1, 4])
    inputs = [batch[k] for k in ("clips", "boxes", "box_mask", "valid_hw")]
    want = predict_scores(model.logits(*inputs), pose_softmax=True, num_pose_classes=3)
    np.testing.assert_allclose(np.asarray(model.predict(*inputs)), np.asarray(want), rtol=1e-6)


def test_bad_inputs_are_named(tmp_path, stand_in):
    config = default.get_config()
    workdir, _ = _trained_run(tmp_path, config)
    model = api.load_model(config, workdir, create=stand_in)
    b = h.make_batch(0, 2, 4, [1, 2])
    with pytest.raises(ValueError, match="boxes: expected shape"):
        model.logits(b["clips"], b["boxes"][..., :3], b["box_mask"], b["valid_hw"])
    with pytest.raises(ValueError, match="box_mask: expected a bool dtype"):
        model.logits(b["clips"], b["boxes"], b["box_mask"].astype(np.float32), b["valid_hw"])
    with pytest.raises(ValueError, match="clips: expected rank 5"):
        model.logits(b["clips"][0], b["boxes"], b["box_mask"], b["valid_hw"])


def test_other_model_shape_and_missing_files_are_refused(tmp_path, stand_in):
    config = default.get_config()
    workdir, _ = _trained_run(tmp_path, config)
    other = ml_collections.ConfigDict(default.get_config())
    other.model.num_classes = 12
    with pytest.raises(ValueError, match=r"head/fc/bias has shape \(9,\) in the checkpoint but the model "
                                         r"expects \(12,\)"):
        api.load_model(other, workdir, create=stand_in)
    with pytest.raises(FileNotFoundError, match="no_such_config.py does not exist"):
        api.load_model("configs/no_such_config.py", workdir, create=stand_in)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        api.load_model(config, str(tmp_path / "nowhere"), create=stand_in)


def test_repeated_predict_calls_on_one_shape_compile_once(tmp_path, stand_in):
    """predict is one jitted call (forward + prediction function) cached per input shape: the first call on a
    shape compiles one executable, later calls on that shape (new values, host or device arrays, another Model
    of the same structure) none."""
    config = default.get_config()
    workdir, _ = _trained_run(tmp_path, config)
    model = api.load_model(config, workdir, create=stand_in)
    compiles = []

    def on_event(event, duration_secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    def inputs(seed, b):     # 7 boxes: a shape no other test compiles (the compiled functions are shared)
        batch = h.make_batch(seed, b, 7, [1 + i % 7 for i in range(b)])
        return [batch[k] for k in ("clips", "boxes", "box_mask", "valid_hw")]

    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        first = model.predict(*inputs(0, 2))
        assert len(compiles) == 1
        for seed in (1, 2, 3):
            model.predict(*inputs(seed, 2))
        model.predict(*[jax.device_put(x) for x in inputs(4, 2)])
        assert len(compiles) == 1
        model.predict(*inputs(5, 3))                 # another batch size: one more executable, then cached
        model.predict(*inputs(6, 3))
        assert len(compiles) == 2
        again = api.load_model(config, workdir, create=stand_in)    # the same model loaded again: shared
        again.predict(*inputs(7, 2))
        assert len(compiles) == 2
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    np.testing.assert_array_equal(np.asarray(model.predict(*inputs(0, 2))), np.asarray(first))
