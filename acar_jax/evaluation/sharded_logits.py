"""The evaluator's logits function over a mesh: the detector's one jitted forward (models.detector.jit_logits)
with replicated weights, each batch split over the devices."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from acar_jax.core import parallel
from acar_jax.models.detector import jit_logits


def sharded_logits_fn(graphdef: nnx.GraphDef, weights: tuple[nnx.State, nnx.State, nnx.State], mesh: Mesh):
    """logits_fn(clips, boxes, box_mask, valid_hw[, bank, bank_mask]) -> this process's [b, N, K] numpy logits
    with `weights` = (params, batch_stats, rng_state) replicated on `mesh`: the batch is split over the mesh
    when it divides evenly, else run replicated."""
    forward = jit_logits(graphdef)

    def logits_fn(clip_batch, boxes, box_mask, valid_hw, bank=None, bank_mask=None):
        args = (clip_batch, boxes, box_mask, valid_hw) + (() if bank is None else (bank, bank_mask))
        if clip_batch.shape[0] % jax.local_device_count():
            if jax.process_count() > 1:
                raise ValueError(f"eval batch slice of {clip_batch.shape[0]} clips does not split over "
                                 f"{jax.local_device_count()} local devices; change eval_batch_size")
            return np.asarray(forward(*weights, *args))
        sharding = NamedSharding(mesh, P(parallel.AXIS))
        glob = [jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in args]
        out = forward(*weights, *glob)
        return np.asarray(multihost_utils.global_array_to_host_local_array(out, mesh, P(parallel.AXIS)))
    return logits_fn
