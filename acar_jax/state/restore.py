"""The one restore of a trained model for inference: evaluation, bank extraction, the demo, the exports and
`acar_jax.api` all take a model from a checkpoint through `restore_model`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
from flax import nnx

from acar_jax.models.detector import create_model
from acar_jax.state import checkpoints
from acar_jax.state.train_state import split_model

ModelFactory = Callable[[ml_collections.ConfigDict], nnx.Module]


@dataclasses.dataclass(frozen=True)
class RestoredModel:
    """A model's structure and the weights of one checkpoint step, on the host's default device."""
    graphdef: nnx.GraphDef
    params: nnx.State
    batch_stats: nnx.State
    rng_state: nnx.State      # the dropout streams (unused in inference mode)
    step: int                 # the checkpoint's training step

    @property
    def weights(self) -> tuple[nnx.State, nnx.State, nnx.State]:
        """(params, batch_stats, rng_state): the arguments a jitted forward takes before the inputs."""
        return self.params, self.batch_stats, self.rng_state


def restore_model(config: ml_collections.ConfigDict, checkpoint_dir: str, *,
                  create: ModelFactory = create_model) -> RestoredModel:
    """The model of `config` with the weights of the latest checkpoint under `checkpoint_dir` (a run's workdir,
    its `checkpoints` dir, or a converted checkpoint); a checkpoint of another model shape is refused, naming
    the parameter and both shapes. The optimiser state is not restored: no optimiser is built."""
    graphdef, params, batch_stats, rng_state = split_model(create(config))
    params, batch_stats, step = checkpoints.load_model_state(checkpoint_dir, params, batch_stats)
    return RestoredModel(graphdef, params, batch_stats, rng_state, step)
