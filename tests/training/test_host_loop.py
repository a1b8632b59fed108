"""The loop's host-sync-free pieces (acar_jax/training/host_loop.py): metrics fetched in one go and checked in
step order,
batches copied to the mesh ahead of the step, and a progress bar that writes nothing into a log file."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acar_jax.core import parallel
from acar_jax.training import host_loop, train_step


def _metrics(loss: float) -> dict:
    finite = float(np.isfinite(loss))
    return {"loss": jnp.float32(loss), "num_rois": jnp.float32(4), "grad_norm": jnp.float32(1),
            "applied": jnp.float32(finite), "finite": jnp.float32(finite)}


def test_fetch_checked_returns_host_metrics_in_order_and_empties_pending():
    pending = [(5, _metrics(0.5)), (6, _metrics(0.25))]
    host = host_loop.fetch_checked(pending)
    assert pending == [] and [float(m["loss"]) for m in host] == [0.5, 0.25]
    assert all(isinstance(m["loss"], np.ndarray | np.generic) for m in host)
    assert host_loop.fetch_checked([]) == []


def test_fetch_checked_names_the_first_non_finite_step():
    pending = [(10, _metrics(0.5)), (11, _metrics(float("nan"))), (12, _metrics(float("inf")))]
    with pytest.raises(train_step.NonFiniteLossError, match=r"^step 11: non-finite loss"):
        host_loop.fetch_checked(pending)


def test_prefetch_to_mesh_keeps_order_and_reads_only_size_ahead():
    mesh = parallel.make_mesh()
    pulled = []

    def batches():
        for i in range(5):
            pulled.append(i)
            yield {"x": np.full((jax.device_count(), 2), i, np.float32), "unused": np.zeros(1)}

    it = host_loop.prefetch_to_mesh(batches(), mesh, ("x",), size=2)
    first = next(it)
    assert set(first) == {"x"} and isinstance(first["x"], jax.Array)
    assert first["x"].sharding.spec == jax.sharding.PartitionSpec(parallel.AXIS)
    assert pulled == [0, 1, 2]          # the yielded batch and the two queued behind it
    assert [int(b["x"][0, 0]) for b in it] == [1, 2, 3, 4]


def test_progress_bar_is_silent_when_stderr_is_not_a_terminal():
    bar = host_loop.progress_bar(100, 0, disable=False)   # pytest captures stderr: not a terminal
    assert bar.disable
    bar.close()
