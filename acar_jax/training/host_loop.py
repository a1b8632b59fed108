"""The host side of the loop: batches copied to the mesh ahead of the step that uses them, step metrics fetched
in one transfer and checked in step order, the progress bar and the logged summary."""

from __future__ import annotations

import collections
import itertools
import sys
from collections.abc import Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from acar_jax.core import parallel
from acar_jax.training import train_step

PREFETCH_BATCHES = 2   # batches on the devices ahead of the running step (flax's prefetch_to_device uses 2)


def prefetch_to_mesh(batches: Iterator[dict], mesh: Mesh, keys: Sequence[str], *, size: int) -> Iterator[dict]:
    """Host-local batches -> global arrays split over `mesh`, `size` batches ahead of the one being used: their
    host-to-device copies are started (asynchronously) while the steps before them run, as flax's
    `prefetch_to_device`."""
    queue: collections.deque = collections.deque()

    def enqueue(n: int) -> None:
        for batch in itertools.islice(batches, n):
            queue.append(parallel.shard_batch(batch, mesh, keys))

    enqueue(size)
    while queue:
        batch = queue.popleft()
        enqueue(1)           # before yielding: `size` batches stay in flight while the caller's step runs
        yield batch


def fetch_checked(pending: list[tuple[int, dict]]) -> list[dict]:
    """Fetches the pending steps' metrics to the host in one transfer, raises NonFiniteLossError naming the first
    non-finite step, and empties `pending`."""
    if not pending:
        return []
    host = jax.device_get([metrics for _, metrics in pending])
    for (step, _), metrics in zip(pending, host, strict=True):
        train_step.check_finite(metrics, step)
    pending.clear()
    return host


def progress_bar(total: int, initial: int, *, disable: bool) -> tqdm:
    """tqdm with ETA and steps/s on a terminal. Into a log file or a cluster job's output it writes nothing
    (a frame per step would fill the log); the loop logs one line per log step there instead."""
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                disable=disable or not sys.stderr.isatty())


def eta(steps_left: int, steps_per_sec: float) -> str:
    """h:mm:ss left at the current rate."""
    seconds = int(steps_left / max(steps_per_sec, 1e-9))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def summary(window: list[dict], lr: float, elapsed: float, batch_size: int) -> dict[str, float]:
    """The logged train metrics of a window of steps: the loss weighted by real RoIs, rates and skips."""
    rois = np.asarray([m["num_rois"] for m in window], np.float64)
    loss = np.asarray([m["loss"] for m in window], np.float64)
    return {"train/loss": float((loss * rois).sum() / max(rois.sum(), 1.0)), "train/lr": float(lr),
            "train/grad_norm": float(window[-1]["grad_norm"]),
            "train/skipped_steps": float(sum(1 - m["applied"] for m in window)),
            "train/steps_per_sec": len(window) / max(elapsed, 1e-9),
            "train/examples_per_sec": len(window) * batch_size / max(elapsed, 1e-9)}
