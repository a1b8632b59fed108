"""A trained detector with fixed weights: `Model.logits` / `Model.predict` on batches of clips, compiled once
per model structure and input shape. `acar_jax.api` is its public face.

Inputs follow acar_jax/core/batch.py (clips [B, T, H, W, 3] normalised and zero-padded, boxes [B, N, 4]
normalised to each clip's unpadded frame, box_mask [B, N] bool, valid_hw [B, 2] int); they are checked before
the jitted call.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import ml_collections
from flax import nnx

from acar_jax.core.batch import check_model_inputs
from acar_jax.launch.config_files import load_config
from acar_jax.models.detector import create_model, jit_logits
from acar_jax.models.predictions import predict_scores
from acar_jax.state.restore import RestoredModel, restore_model


class Model:
    """A detector with fixed weights: `logits` and `predict` on host or device arrays."""

    def __init__(self, config: ml_collections.ConfigDict, restored: RestoredModel):
        self.config = config
        self.step = restored.step
        self._state = restored.weights
        self._forward, self._predict = compiled_functions(restored.graphdef, bool(config.train.pose_softmax),
                                                          int(config.train.num_pose_classes))

    @property
    def weights(self) -> tuple[nnx.State, nnx.State, nnx.State]:
        """(params, batch_stats, rng_state): the arguments `forward` takes before the inputs."""
        return self._state

    @property
    def forward(self) -> Callable:
        """The jitted forward(params, batch_stats, rng_state, clips, boxes, box_mask, valid_hw) -> logits
        (models.detector.jit_logits), unchecked: for callers that trace it (acar_jax.inference.export.serving)."""
        return self._forward

    def logits(self, clips, boxes, box_mask, valid_hw) -> jax.Array:
        """[B, N, K] float32 logits of every box (padded boxes give values to ignore)."""
        check_model_inputs(clips, boxes, box_mask, valid_hw)
        return self._forward(*self._state, clips, boxes, box_mask, valid_hw)

    def predict(self, clips, boxes, box_mask, valid_hw) -> jax.Array:
        """[B, N, K] scores in [0, 1]: the prediction function (pose softmax + sigmoid) on the logits, in the
        same compiled call (one compile per input shape, reused by later calls)."""
        check_model_inputs(clips, boxes, box_mask, valid_hw)
        return self._predict(*self._state, clips, boxes, box_mask, valid_hw)


def compiled_functions(graphdef: nnx.GraphDef, pose_softmax: bool, num_pose_classes: int) -> tuple[Callable, Callable]:
    """(jitted forward, jitted predict) of a model structure, shared by every Model of that structure: a second
    load_model of the same model (another checkpoint, the demo run again) reuses the compiled executables
    (jax caches them per jitted function and input shape; the weights are arguments)."""
    try:
        return _compiled_functions(graphdef, pose_softmax, num_pose_classes)
    except TypeError:          # a graph with an unhashable static attribute: jitted anew, not shared
        forward = jit_logits(graphdef)
        return forward, jit_predict(forward, pose_softmax=pose_softmax, num_pose_classes=num_pose_classes)


@functools.lru_cache(maxsize=4)
def _compiled_functions(graphdef: nnx.GraphDef, pose_softmax: bool, num_pose_classes: int) -> tuple[Callable,
                                                                                                      Callable]:
    forward = jit_logits(graphdef)
    return forward, jit_predict(forward, pose_softmax=pose_softmax, num_pose_classes=num_pose_classes)


def jit_predict(forward: Callable, *, pose_softmax: bool, num_pose_classes: int) -> Callable:
    """jit(forward, then the prediction function): one executable per input shape instead of the forward's
    plus one per eager op of the prediction function."""
    @jax.jit
    def predict(params, batch_stats, rng_state, clips, boxes, box_mask, valid_hw):
        return predict_scores(forward(params, batch_stats, rng_state, clips, boxes, box_mask, valid_hw),
                              pose_softmax=pose_softmax, num_pose_classes=num_pose_classes)
    return predict


def load_model(config: str | os.PathLike | ml_collections.ConfigDict, checkpoint_dir: str, *,
               create: Callable[[ml_collections.ConfigDict], nnx.Module] = create_model) -> Model:
    """The model of `config` (a config file path or a ConfigDict) with the weights of the latest checkpoint in
    `checkpoint_dir` (a run's workdir, its `checkpoints` dir, or a converted checkpoint); a checkpoint of another
    model shape is refused, naming the parameter and both shapes. `create` builds the module (default: the
    detector of config.model)."""
    config = load_config(config)
    return Model(config, restore_model(config, checkpoint_dir, create=create))
