"""The train state: what a step updates and a checkpoint holds, and how a model is split into it."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx


class TrainState(flax.struct.PyTreeNode):
    """Everything a resumed run needs besides the config: what orbax checkpoints (see checkpoints.py)."""

    step: jax.Array              # [] int32: global steps run so far, skipped ones included (= data iterator state)
    params: nnx.State            # nnx.Param leaves: what SGD trains
    batch_stats: nnx.State       # nnx.BatchStat leaves: frozen BatchNorm statistics, never updated
    opt_state: optax.OptState    # momentum buffers


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State, nnx.State]:
    """(graphdef, params, batch_stats, rng_state): rng_state holds the nnx RNG streams (dropout), which the
    step reseeds from (seed, step) every time, so it never needs checkpointing."""
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation
                       ) -> tuple[nnx.GraphDef, nnx.State, TrainState]:
    """(graphdef, rng_state, state at step 0) of a freshly built (or restored-into) model."""
    graphdef, params, batch_stats, rng_state = split_model(model)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                       opt_state=tx.init(params))
    return graphdef, rng_state, state
