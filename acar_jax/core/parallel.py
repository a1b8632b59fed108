"""Devices and sharding: the 1-D `data` mesh every step runs on, and host <-> global array placement.

Data parallelism is the only parallelism: parameters are replicated (`P()`), batches are split over the `data`
axis of a mesh over every device of every host. In a multi-process run each process holds its own slice of a
global batch (`shard_batch`) and an identical copy of every replicated tree (`replicate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D `data` mesh over every device of every host (or `devices`)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (AXIS,))


def replicate(tree, mesh: Mesh):
    """Places a host-identical pytree on every device of `mesh` (replicated, `P()`), also across processes."""
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: global_replica(x, sharding), tree)


def global_replica(x, sharding: NamedSharding) -> jax.Array:
    """A replicated global array from this process's copy (every process holds the same value)."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(x))
        keys = jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])
        return jax.random.wrap_key_data(keys, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh, keys: Sequence[str]) -> dict[str, jax.Array]:
    """`keys` of a host-local batch (this process's slice of the global batch) -> global arrays split over
    `data`."""
    sharding = NamedSharding(mesh, P(AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(local_batch[k])) for k in keys}


class BatchSizeError(ValueError):
    """`train.batch_size` does not split over the devices and micro-batches (a config error, named as such)."""


def check_batch_size(global_batch_size: int, num_devices: int, grad_accum_steps: int) -> None:
    """Raises BatchSizeError unless the global batch splits evenly into devices x micro-batches."""
    if grad_accum_steps < 1:
        raise BatchSizeError(f"config.train.grad_accum_steps must be >= 1, got {grad_accum_steps}")
    per_step = num_devices * grad_accum_steps
    if global_batch_size < 1 or global_batch_size % per_step:
        lower = max(global_batch_size // per_step, 1) * per_step
        raise BatchSizeError(
            f"config.train.batch_size={global_batch_size} must be a positive multiple of the number of devices "
            f"({num_devices}) x config.train.grad_accum_steps ({grad_accum_steps}) = {per_step}; e.g. "
            f"--config.train.batch_size={lower} (config.train.scale_lr_with_batch scales the learning rate "
            "with it)")
