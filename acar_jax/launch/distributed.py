"""The multi-host start: `jax.distributed.initialize` from run.py's flags or the cluster's environment."""

from __future__ import annotations

import os

import jax


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """jax.distributed.initialize() for multi-host runs: from the arguments when given, else from the cluster
    environment JAX detects (SLURM, TPU pods, ...). A no-op for a single-process run."""
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES")):
        jax.distributed.initialize()
