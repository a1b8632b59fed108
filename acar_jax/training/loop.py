"""The training loop: `train_and_evaluate(config, workdir)`, read top to bottom.

  records (data_pipelines) -> TrainInput (this host's slice of every global batch, state = step)
  -> sharded train step (train_step.py) on a 1-D `data` mesh over every device of every host
  -> metrics (clu writers: TensorBoard + console; a progress bar with ETA and steps/s)
  -> async checkpoints every `checkpoint.every_steps`, on SIGTERM/SIGINT and at the end (state.checkpoints)
  -> evaluation every `eval_every_steps` and at the end (evaluation.Evaluator).
Re-running the same command resumes from the latest checkpoint and sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from flax import nnx
from jax.sharding import Mesh

from acar_jax.bank.inputs import BankInputs, open_bank_inputs
from acar_jax.core import parallel
from acar_jax.core.batch import BANK_KEYS, TRAIN_KEYS
from acar_jax.evaluation.evaluator import Evaluator
from acar_jax.evaluation.sharded_logits import sharded_logits_fn
from acar_jax.launch.prepare import prepare_run
from acar_jax.models.detector import create_model
from acar_jax.state import checkpoints, train_state
from acar_jax.state.restore import ModelFactory
from acar_jax.training import host_loop, losses, optim, schedules, signals, train_step
from data_pipelines import clips, sources


def config_roi_loss(config: ml_collections.ConfigDict) -> train_step.RoiLossFn:
    """(logits, labels, box_mask) -> [B, N] per-RoI loss of config.train."""
    return functools.partial(losses.roi_losses, pose_softmax=bool(config.train.pose_softmax),
                             num_pose_classes=int(config.train.num_pose_classes))


@dataclasses.dataclass(frozen=True)
class Hooks:
    """What the loop builds and calls. The defaults are the product; tests pass small stand-ins.

    create_model(config) -> module; roi_loss(config) -> per-RoI loss; after_step(step, loop) runs on the host
    after every step's checkpoint decision (e.g. a test pauses there to kill the process at a known step).
    """
    create_model: ModelFactory = create_model
    roi_loss: Callable[[ml_collections.ConfigDict], train_step.RoiLossFn] = config_roi_loss
    after_step: Callable[[int, TrainLoop], None] | None = None


@dataclasses.dataclass
class ModelState:
    """A mesh, the model split into its graph, RNG streams and replicated TrainState, and its optimiser."""
    mesh: Mesh
    graphdef: nnx.GraphDef
    rng_state: nnx.State
    state: train_state.TrainState
    tx: optax.GradientTransformation

    def logits_fn(self):
        """The evaluator's logits function with the current weights."""
        return sharded_logits_fn(self.graphdef, (self.state.params, self.state.batch_stats, self.rng_state),
                                 self.mesh)


def setup_model_state(config: ml_collections.ConfigDict, create: ModelFactory = create_model) -> ModelState:
    """A fresh model of `config` as a TrainState at step 0, replicated on a mesh over every device."""
    mesh = parallel.make_mesh()
    tx = optim.gradient_transformation(config.train.optimizer)
    graphdef, rng_state, state = train_state.create_train_state(create(config), tx)
    return ModelState(mesh, graphdef, parallel.replicate(rng_state, mesh), parallel.replicate(state, mesh), tx)


@dataclasses.dataclass
class TrainLoop:
    """Everything one training run's loop works with, built once by train_and_evaluate."""
    config: ml_collections.ConfigDict
    workdir: str
    model: ModelState
    step_fn: Callable
    train_input: clips.TrainInput
    schedule: schedules.Schedule
    num_steps: int
    checkpointer: checkpoints.Checkpointer
    writer: metric_writers.MetricWriter
    stop: signals.StopRequest
    hooks: Hooks
    evaluator: Evaluator | None
    bank: BankInputs | None           # a feature-bank head's windows (train and val banks)

    def evaluate_current_weights(self) -> dict:
        """The val split scored with the current weights (also logged to the writer)."""
        return self.evaluator.evaluate(self.model.logits_fn(), step=int(self.model.state.step), writer=self.writer,
                                       bank_inputs=None if self.bank is None else self.bank.eval_inputs)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, final_eval: bool = True,
                       hooks: Hooks = Hooks()) -> dict:
    """Trains config's model (resuming from workdir/checkpoints when there is one) and evaluates it.

    Returns the last logged train metrics and, when evaluated, the eval metrics ("eval/mAP", ...).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    checkpoints.quiet_orbax()
    evaluates = final_eval or int(config.eval_every_steps) > 0
    splits = ("train", "val") if evaluates else ("train",)
    parallel.check_batch_size(int(config.train.batch_size), jax.device_count(), int(config.train.grad_accum_steps))
    prepare_run(config, splits)                  # data files checked before step 0, not at the first eval
    bank = open_bank_inputs(config, workdir, splits)
    evaluator = Evaluator(config, workdir) if evaluates else None
    train_input = clips.TrainInput(sources.keyframe_records(config.data, "train"), config.data,
                                   global_batch_size=int(config.train.batch_size), seed=int(config.data.shuffle_seed),
                                   process_index=jax.process_index(), process_count=jax.process_count(),
                                   num_classes=int(config.model.num_classes))
    num_steps = schedules.total_train_steps(config.train, train_input.steps_per_epoch)
    model = setup_model_state(config, hooks.create_model)
    ckpt = checkpoints.Checkpointer(workdir, every_steps=int(config.checkpoint.every_steps),
                                    max_to_keep=int(config.checkpoint.max_to_keep))
    if ckpt.latest_step() is not None:
        model.state = ckpt.restore(model.state)
        logging.info("resumed from %s at step %d", ckpt.directory, int(model.state.step))
    elif config.checkpoint.init_from:
        model.state = checkpoints.init_from(model.state, config.checkpoint.init_from,
                                            scope=config.checkpoint.init_scope)
    step_fn = train_step.make_train_step(model.graphdef, model.tx, model.mesh, roi_loss_fn=hooks.roi_loss(config),
                                         grad_accum_steps=int(config.train.grad_accum_steps), seed=int(config.seed))
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    schedule = schedules.create_schedule(config.train, train_input.steps_per_epoch)
    logging.info("training %d steps (%d per epoch) from step %d on %d devices, %d processes; lr %.6g -> %.6g over "
                 "%d warmup steps, milestones %s (x%.4g: batch %d, linear scaling %s)", num_steps,
                 train_input.steps_per_epoch, int(model.state.step), jax.device_count(), jax.process_count(),
                 schedule.base_lr, schedule.warmup_lr, schedule.warmup_steps, schedule.milestones,
                 schedules.lr_scale(config.train), int(config.train.batch_size),
                 "on" if config.train.scale_lr_with_batch else "off")
    with signals.StopRequest() as stop:
        loop = TrainLoop(config, workdir, model, step_fn, train_input, schedule, num_steps, ckpt, writer, stop,
                         hooks, evaluator, bank)
        try:
            result = run_steps(loop)
            ckpt.save(model.state, force=True)    # the final step, or the current one after SIGTERM / SIGINT
        finally:
            ckpt.close()                          # waits for async saves (also after a non-finite loss)
    if stop:
        logging.warning("signal %d: saved the checkpoint of step %d in %s and stopped", stop.signal,
                        int(model.state.step), ckpt.directory)
    elif final_eval:
        result.update({f"eval/{k}": v for k, v in loop.evaluate_current_weights().items()})
    writer.flush()
    return result


def run_steps(loop: TrainLoop) -> dict:
    """Steps from the state's step to num_steps (or until a signal): metrics, periodic saves and evals.

    The steady state never waits for the device: the step's metrics stay on device until a log step, a checkpoint
    save, an eval or the end, where they are fetched together and their finite flags checked in step order (so
    the first non-finite step is named and no checkpoint ever holds a state after it); the checkpoint schedule is
    counted on the host; the next batches are already being copied to the devices while a step runs.
    """
    config, model = loop.config, loop.model
    start = int(model.state.step)          # the one read of the device step counter
    log_every, eval_every = int(config.log_every_steps), int(config.eval_every_steps)
    host_batches, keys = loop.train_input.iterator(start_step=start), TRAIN_KEYS
    if loop.bank is not None:
        host_batches, keys = loop.bank.train_batches(host_batches), TRAIN_KEYS + BANK_KEYS
    batches = host_loop.prefetch_to_mesh(host_batches, model.mesh, keys, size=host_loop.PREFETCH_BATCHES)
    pending: list[tuple[int, dict]] = []   # (step, device metrics) not yet fetched and checked
    window, window_start, result = [], time.perf_counter(), {}
    bar = host_loop.progress_bar(loop.num_steps, start, disable=jax.process_index() > 0)
    for step in range(start, loop.num_steps):
        lr = loop.schedule.lr(step)
        model.state, metrics = loop.step_fn(model.state, model.rng_state, next(batches), np.float32(lr))
        pending.append((step, metrics))
        done = step + 1
        bar.update(1)
        if done % loop.checkpointer.every_steps == 0:
            window += host_loop.fetch_checked(pending)      # the state to save follows only finite steps
            loop.checkpointer.save(model.state)
        if loop.hooks.after_step is not None:
            loop.hooks.after_step(done, loop)
        if done % log_every == 0 or done == loop.num_steps:
            window += host_loop.fetch_checked(pending)
            result = host_loop.summary(window, lr, time.perf_counter() - window_start, int(config.train.batch_size))
            loop.writer.write_scalars(done, result)
            bar.set_postfix(loss=f"{result['train/loss']:.4f}", lr=f"{lr:.2e}")
            if bar.disable and jax.process_index() == 0:
                logging.info("step %d/%d: loss %.4f, %.2f steps/s, ETA %s", done, loop.num_steps,
                             result["train/loss"], result["train/steps_per_sec"],
                             host_loop.eta(loop.num_steps - done, result["train/steps_per_sec"]))
            window, window_start = [], time.perf_counter()
        if loop.stop:
            break
        if eval_every > 0 and done % eval_every == 0 and done < loop.num_steps:
            window += host_loop.fetch_checked(pending)
            loop.evaluate_current_weights()
    host_loop.fetch_checked(pending)          # before the final (or signal) save of train_and_evaluate
    bar.close()
    return result
