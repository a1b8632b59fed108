"""The public Python interface: load a trained model and run it on batches of clips.

    from acar_jax import api
    model = api.load_model("configs/default.py", "runs/default/checkpoints")
    logits = model.logits(clips, boxes, box_mask, valid_hw)    # [B, N, K]
    scores = model.predict(clips, boxes, box_mask, valid_hw)   # the prediction function applied

Inputs follow acar_jax/batch.py (clips [B, T, H, W, 3] normalised and zero-padded, boxes [B, N, 4] normalised to
each clip's unpadded frame, box_mask [B, N] bool, valid_hw [B, 2] int); they are checked before the jitted call.
"""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from acar_jax import checkpoints
from acar_jax.batch import check_model_inputs


def create_model(config: ml_collections.ConfigDict, *, seed: int | None = None) -> nnx.Module:
    """The detector of `config.model` with fresh parameters (seed: config.seed)."""
    from acar_jax.models.detector import ACARDetector  # noqa: PLC0415 (keeps this module importable alone)

    seed = int(config.seed) if seed is None else seed
    return ACARDetector(config.model, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def load_config(config: str | ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A ConfigDict as given, or `get_config()` of a configs/*.py file path."""
    if isinstance(config, ml_collections.ConfigDict):
        return config
    path = os.fspath(config)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist (expected e.g. configs/default.py)")
    spec = importlib.util.spec_from_file_location(f"_acar_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} has no get_config()")
    return module.get_config()


def make_forward(graphdef: nnx.GraphDef):
    """jit((params, batch_stats, rest, clips, boxes, box_mask, valid_hw) -> float32 logits), inference mode."""
    @jax.jit
    def forward(params, batch_stats, rest, clips, boxes, box_mask, valid_hw):
        model = nnx.merge(graphdef, params, batch_stats, rest, copy=True)
        return model(clips, boxes, box_mask, valid_hw, train=False).astype(jnp.float32)
    return forward


class Model:
    """A detector with fixed weights: `logits` and `predict` on host or device arrays."""

    def __init__(self, config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, params: nnx.State,
                 batch_stats: nnx.State, rest: nnx.State):
        self.config = config
        self._state = (params, batch_stats, rest)
        self._forward = make_forward(graphdef)

    def logits(self, clips, boxes, box_mask, valid_hw) -> jax.Array:
        """[B, N, K] float32 logits of every box (padded boxes give values to ignore)."""
        check_model_inputs(clips, boxes, box_mask, valid_hw)
        return self._forward(*self._state, clips, boxes, box_mask, valid_hw)

    def predict(self, clips, boxes, box_mask, valid_hw) -> jax.Array:
        """[B, N, K] scores in [0, 1]: the loss's prediction function (pose softmax + sigmoid) on the logits."""
        from acar_jax.losses import predict_scores  # noqa: PLC0415

        train = self.config.train
        return predict_scores(self.logits(clips, boxes, box_mask, valid_hw),
                              pose_softmax=bool(train.pose_softmax), num_pose_classes=int(train.num_pose_classes))


def load_model(config: str | ml_collections.ConfigDict, checkpoint_dir: str) -> Model:
    """The model of `config` with the weights of the latest checkpoint in `checkpoint_dir` (a run's workdir,
    its `checkpoints` dir, or a converted checkpoint); a checkpoint of another model shape is refused, naming the
    parameter and both shapes."""
    config = load_config(config)
    graphdef, params, batch_stats, rest = nnx.split(create_model(config), nnx.Param, nnx.BatchStat, ...)
    params, batch_stats = checkpoints.load_model_state(checkpoint_dir, params, batch_stats)
    return Model(config, graphdef, params, batch_stats, rest)


def as_numpy(x) -> np.ndarray:
    return np.asarray(jax.device_get(x))
