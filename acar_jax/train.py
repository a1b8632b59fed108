"""train_and_evaluate(config, workdir): the whole training loop on one screen.

  records (data_pipelines.ava_files) -> TrainInput (this host's slice of every global batch, state = step)
  -> sharded train step (acar_jax.train_step) on a 1-D `data` mesh over every device of every host
  -> metrics (clu writers: TensorBoard + console; a progress bar with ETA and steps/s)
  -> async checkpoints every `checkpoint.every_steps`, on SIGTERM/SIGINT and at the end (acar_jax.checkpoints)
  -> evaluation every `eval_every_steps` and at the end (acar_jax.evaluate).
Re-running the same command resumes from the latest checkpoint and sees exactly the batches it would have seen.
"""

from __future__ import annotations

import functools
import logging as pylogging
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from acar_jax import api, checkpoints, optim, schedules, train_step
from data_pipelines import ava_files, clips, synthetic

# Fault-injection hook for tests/test_resume.py and test_sigterm.py: after step k (and every checkpoint started
# so far) is done, write `workdir/paused_at_step_<k>` and block until a signal arrives, so a test can SIGKILL or
# SIGTERM the run at a known point without timing luck. Unset in normal runs.
PAUSE_ENV = "ACAR_JAX_PAUSE_AFTER_STEP"


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """jax.distributed.initialize() for multi-host runs: from the arguments when given, else from the cluster
    environment JAX detects (SLURM, TPU pods, ...). A no-op for a single-process run."""
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES")):
        jax.distributed.initialize()


def prepare_data(config: ml_collections.ConfigDict) -> None:
    """Generates the synthetic dataset under data.root when the config asks for it and it is absent."""
    if config.data.dataset == "synthetic":
        synthetic.ensure_synthetic_dataset(config.data.root, config.synthetic)


def roi_loss_fn(config: ml_collections.ConfigDict):
    """(logits, labels, box_mask) -> [B, N] per-RoI loss of config.train."""
    from acar_jax import losses  # noqa: PLC0415

    loss = functools.partial(losses.roi_losses, pose_softmax=bool(config.train.pose_softmax),
                             num_pose_classes=int(config.train.num_pose_classes))
    return lambda logits, labels, box_mask: loss(logits, labels, box_mask)


def make_logits_fn(graphdef, state: train_step.TrainState, rest, mesh):
    """logits_fn(clips, boxes, box_mask, valid_hw) -> this process's [b, N, K] numpy logits (evaluate_split):
    the batch is split over the mesh when it divides evenly, else run replicated."""
    forward = api.make_forward(graphdef)

    def logits_fn(clips_, boxes, box_mask, valid_hw):
        args = (clips_, boxes, box_mask, valid_hw)
        if clips_.shape[0] % jax.local_device_count():
            if jax.process_count() > 1:
                raise ValueError(f"eval batch slice of {clips_.shape[0]} clips does not split over "
                                 f"{jax.local_device_count()} local devices; change eval_batch_size")
            return np.asarray(forward(state.params, state.batch_stats, rest, *args))
        sharding = NamedSharding(mesh, P(train_step.AXIS))
        glob = [jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in args]
        out = forward(state.params, state.batch_stats, rest, *glob)
        return np.asarray(multihost_utils.global_array_to_host_local_array(out, mesh, P(train_step.AXIS)))
    return logits_fn


def evaluate(config, workdir, graphdef, state, rest, mesh, writer) -> dict:
    """evaluate_split on the val split with the current weights."""
    from acar_jax.evaluate import evaluate_split  # noqa: PLC0415

    return evaluate_split(config, make_logits_fn(graphdef, state, rest, mesh), workdir, step=int(state.step),
                          writer=writer)


def _pause_for_tests(step: int, ckpt: checkpoints.Checkpointer, workdir: str, stop: checkpoints.StopRequest
                     ) -> None:
    if os.environ.get(PAUSE_ENV) != str(step):
        return
    ckpt.wait()
    with open(os.path.join(workdir, f"paused_at_step_{step}"), "w") as f:
        f.write(str(os.getpid()))
    while not stop:   # SIGKILL ends us here; SIGTERM / SIGINT resume the loop, which saves and stops
        time.sleep(0.05)


class _DropOrbaxInfo(pylogging.Filter):
    """orbax logs every save step at INFO; keep its warnings and errors only."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops orbax's per-save INFO lines from the absl log."""
    handler_logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in handler_logger.filters):
        handler_logger.addFilter(_DropOrbaxInfo())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, final_eval: bool = True) -> dict:
    """Trains config's model (resuming from workdir/checkpoints when there is one) and evaluates it.

    Returns the last logged train metrics and, when evaluated, the eval metrics ("eval/mAP", ...).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    quiet_orbax()
    prepare_data(config)
    mesh = train_step.make_mesh()
    train_step.check_batch_size(int(config.train.batch_size), jax.device_count(), int(config.train.grad_accum_steps))
    records = ava_files.load_keyframe_records(config.data, "train")
    train_input = clips.TrainInput(records, config.data, global_batch_size=int(config.train.batch_size),
                                   seed=int(config.data.shuffle_seed), process_index=jax.process_index(),
                                   process_count=jax.process_count(), num_classes=int(config.model.num_classes))
    num_steps = schedules.total_train_steps(config.train, train_input.steps_per_epoch)
    schedule = schedules.create_schedule(config.train, train_input.steps_per_epoch)

    tx = optim.update_direction(config.train.optimizer)
    graphdef, rest, state = train_step.create_train_state(api.create_model(config), tx)
    state, rest = train_step.replicate(state, mesh), train_step.replicate(rest, mesh)
    ckpt = checkpoints.Checkpointer(workdir, every_steps=int(config.checkpoint.every_steps),
                                    max_to_keep=int(config.checkpoint.max_to_keep))
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        logging.info("resumed from %s at step %d", ckpt.directory, int(state.step))
    elif config.checkpoint.init_from:
        state = checkpoints.init_from(state, config.checkpoint.init_from, scope=config.checkpoint.init_scope)
    step_fn = train_step.make_train_step(graphdef, tx, mesh, roi_loss_fn=roi_loss_fn(config),
                                         grad_accum_steps=int(config.train.grad_accum_steps), seed=int(config.seed))
    eval_fn = lambda st: evaluate(config, workdir, graphdef, st, rest, mesh, writer)

    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    logging.info("training %d steps (%d per epoch) from step %d on %d devices, %d processes", num_steps,
                 train_input.steps_per_epoch, int(state.step), jax.device_count(), jax.process_count())
    with checkpoints.StopRequest() as stop:
        try:
            state, result = _train_loop(config, workdir, state, rest, step_fn, train_input, schedule, num_steps,
                                        mesh, ckpt, writer, stop, eval_fn)
            ckpt.save(state, force=True)          # the final step, or the current one after SIGTERM / SIGINT
        finally:
            ckpt.close()                          # waits for async saves (also after a non-finite loss)
    if stop:
        logging.warning("signal %d: saved the checkpoint of step %d in %s and stopped", stop.signal,
                        int(state.step), ckpt.directory)
    elif final_eval:
        metrics = eval_fn(state)
        result.update({f"eval/{k}": v for k, v in metrics.items()})
    writer.flush()
    return result


def _train_loop(config, workdir, state, rest, step_fn, train_input, schedule, num_steps, mesh, ckpt, writer,
                stop, eval_fn) -> tuple[train_step.TrainState, dict]:
    """Steps from state.step to num_steps (or until a signal): metrics, periodic saves and evals."""
    start = int(state.step)
    batches = train_input.iterator(start_step=start)
    window, window_start, result = [], time.perf_counter(), {}
    bar = tqdm(total=num_steps, initial=start, unit="step", dynamic_ncols=True, disable=jax.process_index() > 0)
    for step in range(start, num_steps):
        lr = schedule.lr(step)
        state, metrics = step_fn(state, rest, train_step.shard_batch(next(batches), mesh), jnp.float32(lr))
        metrics = jax.device_get(metrics)
        train_step.check_finite(metrics, step)
        window.append(metrics)
        done = step + 1
        bar.update(1)
        ckpt.save(state)
        _pause_for_tests(done, ckpt, workdir, stop)
        if done % int(config.log_every_steps) == 0 or done == num_steps:
            result = _summary(window, lr, time.perf_counter() - window_start, int(config.train.batch_size))
            writer.write_scalars(done, result)
            bar.set_postfix(loss=f"{result['train/loss']:.4f}", lr=f"{lr:.2e}")
            window, window_start = [], time.perf_counter()
        if stop:
            break
        if int(config.eval_every_steps) > 0 and done % int(config.eval_every_steps) == 0 and done < num_steps:
            eval_fn(state)                        # evaluate_split writes its metrics to `writer`
    bar.close()
    return state, result


def _summary(window: list[dict], lr: float, elapsed: float, batch_size: int) -> dict[str, float]:
    rois = np.asarray([m["num_rois"] for m in window], np.float64)
    losses = np.asarray([m["loss"] for m in window], np.float64)
    return {"train/loss": float((losses * rois).sum() / max(rois.sum(), 1.0)), "train/lr": float(lr),
            "train/grad_norm": float(window[-1]["grad_norm"]),
            "train/skipped_steps": float(sum(1 - m["applied"] for m in window)),
            "train/steps_per_sec": len(window) / max(elapsed, 1e-9),
            "train/examples_per_sec": len(window) * batch_size / max(elapsed, 1e-9)}


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluates the latest checkpoint of `workdir` (run.py --mode=eval)."""
    workdir = os.path.abspath(workdir)
    quiet_orbax()
    prepare_data(config)
    mesh = train_step.make_mesh()
    tx = optim.update_direction(config.train.optimizer)
    graphdef, rest, state = train_step.create_train_state(api.create_model(config), tx)
    state, rest = train_step.replicate(state, mesh), train_step.replicate(rest, mesh)
    ckpt = checkpoints.Checkpointer(workdir, every_steps=int(config.checkpoint.every_steps),
                                    max_to_keep=int(config.checkpoint.max_to_keep))
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"--mode=eval: no checkpoint in {ckpt.directory}; train first")
    state = ckpt.restore(state)
    ckpt.close()
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    metrics = evaluate(config, workdir, graphdef, state, rest, mesh, writer)
    writer.flush()
    return {f"eval/{k}": v for k, v in metrics.items()}
