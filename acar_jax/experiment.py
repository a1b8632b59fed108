"""The experiment loop: `train_and_evaluate(config, workdir)` and `evaluate_checkpoint(config, workdir)`.

  records (data_pipelines.ava_files) -> TrainInput (this host's slice of every global batch, state = step)
  -> sharded train step (training.train_step) on a 1-D `data` mesh over every device of every host
  -> metrics (clu writers: TensorBoard + console; a progress bar with ETA and steps/s)
  -> async checkpoints every `checkpoint.every_steps`, on SIGTERM/SIGINT and at the end (training.checkpoints)
  -> evaluation every `eval_every_steps` and at the end (evaluation.evaluator).
Re-running the same command resumes from the latest checkpoint and sees exactly the batches it would have seen.
This module sits above training and evaluation: it is the only place that joins them.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import itertools
import logging as pylogging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from acar_jax import config_files, parallel
from acar_jax.batch import BANK_KEYS, TRAIN_KEYS
from acar_jax.evaluation.evaluator import evaluate_split
from acar_jax.models.detector import create_model, jit_logits
from acar_jax.training import checkpoints, losses, optim, schedules, train_step
from data_pipelines import ava_files, bank_files, clips, packed_clips, sources, synthetic

ModelFactory = Callable[[ml_collections.ConfigDict], nnx.Module]

# Errors in what the user gave (config values, data files): run.py prints their one-line message, no traceback.
USER_INPUT_ERRORS = (ava_files.MissingDataError, ava_files.AvaFormatError, parallel.BatchSizeError,
                     sources.DataSourceError, packed_clips.NotPreparedError, packed_clips.ShardsConfigError,
                     bank_files.BankError)


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
    """The run setup shared by training, evaluation and the benchmarks: a mesh, the model split into its graph,
    RNG streams and replicated TrainState, and the optimiser that state was made for."""
    mesh: Mesh
    graphdef: nnx.GraphDef
    rng_state: nnx.State
    state: train_step.TrainState
    tx: optax.GradientTransformation


def setup_model_state(config: ml_collections.ConfigDict, create: ModelFactory = create_model) -> ModelState:
    """A fresh model of `config` as a TrainState at step 0, replicated on a mesh over every device."""
    mesh = parallel.make_mesh()
    tx = optim.gradient_transformation(config.train.optimizer)
    graphdef, rng_state, state = train_step.create_train_state(create(config), tx)
    return ModelState(mesh, graphdef, parallel.replicate(rng_state, mesh), parallel.replicate(state, mesh), tx)


def prepare_data(config: ml_collections.ConfigDict) -> None:
    """Generates the synthetic dataset (default, or the long-term one of the ACFB chain) under data.root when the
    config asks for it and it is absent, and packs it (seconds) when the config reads packed shards (real datasets
    are packed by tools/prepare_tfds.py)."""
    if config.data.dataset == "synthetic":
        synthetic.ensure_synthetic_dataset(config.data.root, config.synthetic)
    elif config.data.dataset == "synthetic_longterm":
        from data_pipelines import synthetic_longterm  # noqa: PLC0415 (the ACFB chain's dataset only)
        synthetic_longterm.ensure_dataset(config.data.root, config.synthetic)
    else:
        return
    if sources.data_source(config.data) == "tfds" and jax.process_index() == 0:
        from data_pipelines import packed_prepare  # noqa: PLC0415

        for split in packed_clips.SPLITS:
            packed_prepare.prepare_split(config.data, split, num_classes=int(config.model.num_classes),
                                         log=lambda line: logging.info("%s", line))
    if sources.data_source(config.data) == "tfds" and jax.process_count() > 1:
        multihost_utils.sync_global_devices("synthetic shards prepared")


def sharded_logits_fn(model: ModelState):
    """logits_fn(clips, boxes, box_mask, valid_hw[, bank, bank_mask]) -> this process's [b, N, K] numpy logits
    (evaluate_split)
    with the current weights: the batch is split over the mesh when it divides evenly, else run replicated."""
    forward = jit_logits(model.graphdef)
    state, mesh = model.state, model.mesh

    def logits_fn(clip_batch, boxes, box_mask, valid_hw, bank=None, bank_mask=None):
        args = (clip_batch, boxes, box_mask, valid_hw) + (() if bank is None else (bank, bank_mask))
        if clip_batch.shape[0] % jax.local_device_count():
            if jax.process_count() > 1:
                raise ValueError(f"eval batch slice of {clip_batch.shape[0]} clips does not split over "
                                 f"{jax.local_device_count()} local devices; change eval_batch_size")
            return np.asarray(forward(state.params, state.batch_stats, model.rng_state, *args))
        sharding = NamedSharding(mesh, P(parallel.AXIS))
        glob = [jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in args]
        out = forward(state.params, state.batch_stats, model.rng_state, *glob)
        return np.asarray(multihost_utils.global_array_to_host_local_array(out, mesh, P(parallel.AXIS)))
    return logits_fn


class _DropOrbaxInfo(pylogging.Filter):
    """orbax logs every save step at INFO; keep its warnings and errors only."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops orbax's per-save INFO lines from the absl log."""
    handler_logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in handler_logger.filters):
        handler_logger.addFilter(_DropOrbaxInfo())


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
    stop: checkpoints.StopRequest
    hooks: Hooks
    bank: BankInputs | None = None           # a feature-bank head's windows (train and val banks)

    def evaluate_current_weights(self) -> dict:
        """evaluate_split on the val split with the current weights (it also logs to the writer)."""
        return evaluate_split(self.config, sharded_logits_fn(self.model), self.workdir,
                              step=int(self.model.state.step), writer=self.writer,
                              bank_inputs=None if self.bank is None else self.bank.eval_inputs)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, final_eval: bool = True,
                       hooks: Hooks = Hooks()) -> dict:
    """Trains config's model (resuming from workdir/checkpoints when there is one) and evaluates it.

    Returns the last logged train metrics and, when evaluated, the eval metrics ("eval/mAP", ...).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    quiet_orbax()
    prepare_data(config)
    parallel.check_batch_size(int(config.train.batch_size), jax.device_count(), int(config.train.grad_accum_steps))
    sources.check_data_files(config.data, ("train", "val") if final_eval or int(config.eval_every_steps) > 0
                             else ("train",))        # before step 0, not at the first eval
    evaluates = final_eval or int(config.eval_every_steps) > 0
    bank = open_bank_inputs(config, workdir, ("train", "val") if evaluates else ("train",))
    records = sources.keyframe_records(config.data, "train")
    train_input = clips.TrainInput(records, config.data, global_batch_size=int(config.train.batch_size),
                                   seed=int(config.data.shuffle_seed), process_index=jax.process_index(),
                                   process_count=jax.process_count(), num_classes=int(config.model.num_classes))
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
    logging.info("training %d steps (%d per epoch) from step %d on %d devices, %d processes", num_steps,
                 train_input.steps_per_epoch, int(model.state.step), jax.device_count(), jax.process_count())
    schedule = schedules.create_schedule(config.train, train_input.steps_per_epoch)
    logging.info("lr %.6g -> %.6g over %d warmup steps, milestones %s (x%.4g: batch %d, linear scaling %s)",
                 schedule.base_lr, schedule.warmup_lr, schedule.warmup_steps, schedule.milestones,
                 schedules.lr_scale(config.train), int(config.train.batch_size),
                 "on" if config.train.scale_lr_with_batch else "off")
    with checkpoints.StopRequest() as stop:
        loop = TrainLoop(config, workdir, model, step_fn, train_input, schedule, num_steps, ckpt,
                         writer, stop, hooks, bank)
        try:
            result = _run(loop)
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


def _run(loop: TrainLoop) -> dict:
    """Steps from the state's step to num_steps (or until a signal): metrics, periodic saves and evals.

    The steady state never waits for the device: the step's metrics stay on device until a log step, a checkpoint
    save, an eval or the end, where they are fetched together and their finite flags checked in step order (so
    the first non-finite step is named and no checkpoint ever holds a state after it); the checkpoint schedule is
    counted on the host; the next batches are already being copied to the devices while a step runs.
    """
    config, model = loop.config, loop.model
    start = int(model.state.step)          # the one read of the device step counter
    log_every, eval_every = int(config.log_every_steps), int(config.eval_every_steps)
    host_batches = loop.train_input.iterator(start_step=start)
    keys = TRAIN_KEYS
    if loop.bank is not None:
        host_batches, keys = loop.bank.train_batches(host_batches), TRAIN_KEYS + BANK_KEYS
    batches = prefetch_to_mesh(host_batches, model.mesh, keys, size=PREFETCH_BATCHES)
    pending: list[tuple[int, dict]] = []   # (step, device metrics) not yet fetched and checked
    window, window_start, result = [], time.perf_counter(), {}
    bar = progress_bar(loop.num_steps, start, disable=jax.process_index() > 0)
    for step in range(start, loop.num_steps):
        lr = loop.schedule.lr(step)
        model.state, metrics = loop.step_fn(model.state, model.rng_state, next(batches), np.float32(lr))
        pending.append((step, metrics))
        done = step + 1
        bar.update(1)
        if done % loop.checkpointer.every_steps == 0:
            window += fetch_checked(pending)      # the state to save follows only finite steps
            loop.checkpointer.save(model.state)
        if loop.hooks.after_step is not None:
            loop.hooks.after_step(done, loop)
        if done % log_every == 0 or done == loop.num_steps:
            window += fetch_checked(pending)
            result = _summary(window, lr, time.perf_counter() - window_start, int(config.train.batch_size))
            loop.writer.write_scalars(done, result)
            bar.set_postfix(loss=f"{result['train/loss']:.4f}", lr=f"{lr:.2e}")
            if bar.disable and jax.process_index() == 0:
                logging.info("step %d/%d: loss %.4f, %.2f steps/s, ETA %s", done, loop.num_steps,
                             result["train/loss"], result["train/steps_per_sec"],
                             _eta(loop.num_steps - done, result["train/steps_per_sec"]))
            window, window_start = [], time.perf_counter()
        if loop.stop:
            break
        if eval_every > 0 and done % eval_every == 0 and done < loop.num_steps:
            window += fetch_checked(pending)
            loop.evaluate_current_weights()
    fetch_checked(pending)                    # before the final (or signal) save of train_and_evaluate
    bar.close()
    return result


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


def _eta(steps_left: int, steps_per_sec: float) -> str:
    seconds = int(steps_left / max(steps_per_sec, 1e-9))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _summary(window: list[dict], lr: float, elapsed: float, batch_size: int) -> dict[str, float]:
    rois = np.asarray([m["num_rois"] for m in window], np.float64)
    loss = np.asarray([m["loss"] for m in window], np.float64)
    return {"train/loss": float((loss * rois).sum() / max(rois.sum(), 1.0)), "train/lr": float(lr),
            "train/grad_norm": float(window[-1]["grad_norm"]),
            "train/skipped_steps": float(sum(1 - m["applied"] for m in window)),
            "train/steps_per_sec": len(window) / max(elapsed, 1e-9),
            "train/examples_per_sec": len(window) * batch_size / max(elapsed, 1e-9)}


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *, hooks: Hooks = Hooks()) -> dict:
    """Evaluates the latest checkpoint of `workdir` (run.py --mode=eval)."""
    workdir = os.path.abspath(workdir)
    quiet_orbax()
    prepare_data(config)
    sources.check_data_files(config.data, ("val",))
    bank = open_bank_inputs(config, workdir, ("val",))
    model = setup_model_state(config, hooks.create_model)
    ckpt = checkpoints.Checkpointer(workdir, every_steps=int(config.checkpoint.every_steps),
                                    max_to_keep=int(config.checkpoint.max_to_keep))
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"--mode=eval: no checkpoint in {ckpt.directory}; train first")
    model.state = ckpt.restore(model.state)
    ckpt.close()
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    metrics = evaluate_split(config, sharded_logits_fn(model), workdir, step=int(model.state.step), writer=writer,
                             bank_inputs=None if bank is None else bank.eval_inputs)
    writer.flush()
    return {f"eval/{k}": v for k, v in metrics.items()}


# ------------------------------------------------------------------------------------------ ACFB bank

BANK_HEADS = ("acfb", "lfb")      # head types that read a feature bank
CHAIN_SOURCE_DIR = "acar"         # the chain's ACAR run: <workdir>/acar (acar_jax/acfb_chain.py)
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_reads_bank(config: ml_collections.ConfigDict) -> bool:
    return str(config.model.head.type) in BANK_HEADS


def bank_source_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config of the ACAR run a bank comes from: `config` itself for an ACAR head; for a feature-bank head,
    the model, train recipe and checkpoint fields of `bank.source_config` (a config file) with this config's
    data, synthetic set, seed and bank fields (`bank.source_num_steps` > 0 replaces its number of steps)."""
    if not config_reads_bank(config):
        return config
    path = str(config.bank.source_config)
    if not path:
        raise bank_files.BankError(f"bank.source_config: model.head.type {config.model.head.type!r} reads a bank; "
                                   "name the ACAR config file the bank comes from (e.g. "
                                   "configs/ava_slowfast_r50_acar.py)")
    resolved = path if os.path.isfile(path) else os.path.join(_PROJECT_ROOT, path)
    if not os.path.isfile(resolved):
        raise bank_files.BankError(f"bank.source_config: no such config file {path!r}")
    source = config_files.load_config(resolved)
    if str(source.model.head.type) != "acar":
        raise bank_files.BankError(f"bank.source_config: {path} has model.head.type "
                                   f"{source.model.head.type!r}; a bank comes from an ACAR model ('acar')")
    out = ml_collections.ConfigDict(config.to_dict())
    out.model = ml_collections.ConfigDict(source.model.to_dict())
    out.train = ml_collections.ConfigDict(source.train.to_dict())
    out.checkpoint = ml_collections.ConfigDict(source.checkpoint.to_dict())   # how the source run is trained
    if int(config.bank.source_num_steps) > 0:
        out.train.num_steps = int(config.bank.source_num_steps)
    return out


def bank_source_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The trained ACAR run a bank comes from: `bank.source_workdir`; else `workdir` for an ACAR config, or the
    chain's <workdir>/acar for a feature-bank config with `bank.chain`."""
    if config.bank.source_workdir:
        return os.path.abspath(config.bank.source_workdir)
    if not config_reads_bank(config):
        return os.path.abspath(workdir)
    if config.bank.chain:
        return os.path.join(os.path.abspath(workdir), CHAIN_SOURCE_DIR)
    raise bank_files.BankError(f"bank.source_workdir: model.head.type {config.model.head.type!r} reads the bank "
                               "of a trained ACAR run; set it to that run's workdir")


def bank_directory(config: ml_collections.ConfigDict, workdir: str, split: str, scale: int) -> str:
    """Where the bank of (split, scale) lives: <bank.dir or <source run>/bank>/[<content>_]<split>_s<scale>
    (no prefix for ACFB's first-order maps, "actors_" for the LFB-style variant's actor features)."""
    root = config.bank.dir or os.path.join(bank_source_workdir(config, workdir), "bank")
    content = str(config.bank.content)
    prefix = "" if content == "maps" else f"{content}_"
    return os.path.join(os.path.abspath(root), f"{prefix}{split}_s{int(scale)}")


def bank_views(config: ml_collections.ConfigDict) -> list[tuple[str, int]]:
    """(split, scale) of every bank a config needs: train at data.short_side, val at each test scale."""
    return [("train", int(config.data.short_side))] + [("val", int(s)) for s in config.data.eval_scales]


def params_digest(params: nnx.State | dict) -> str:
    """sha256 of every parameter sorted by path (an nnx.State, or the pure dict a checkpoint holds): a bank names
    the exact weights it came from, and a consumer checks them from the checkpoint without building the model."""
    pure = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
    flat: list[tuple[str, np.ndarray]] = []

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            else:
                local = value.addressable_data(0) if isinstance(value, jax.Array) else value
                flat.append((f"{prefix}{key}", np.ascontiguousarray(np.asarray(local))))

    walk(pure, "")
    digest = hashlib.sha256()
    for path, value in sorted(flat, key=lambda kv: kv[0]):
        digest.update(f"{path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _source_checkpoints(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, int | None]:
    """(the source run's checkpoint directory, its latest step or None); creates nothing."""
    directory = os.path.join(bank_source_workdir(config, workdir), checkpoints.CHECKPOINT_SUBDIR)
    if not os.path.isdir(directory):
        return directory, None
    ckpt = checkpoints.Checkpointer(os.path.dirname(directory), every_steps=1, max_to_keep=1)
    try:
        return ckpt.directory, ckpt.latest_step()
    finally:
        ckpt.close()


def restore_bank_source(config: ml_collections.ConfigDict, workdir: str, create: ModelFactory
                        ) -> tuple[ml_collections.ConfigDict, ModelState, str]:
    """(source config, the ACAR model restored from the source run's latest checkpoint, its params digest)."""
    source_config = bank_source_config(config)
    directory, step = _source_checkpoints(config, workdir)
    if step is None:
        raise FileNotFoundError(f"--mode=extract_bank: no checkpoint in {directory} (bank.source_workdir); train "
                                "the ACAR model first")
    model = setup_model_state(source_config, create)
    ckpt = checkpoints.Checkpointer(os.path.dirname(directory), every_steps=1, max_to_keep=1)
    model.state = ckpt.restore(model.state)
    ckpt.close()
    return source_config, model, params_digest(model.state.params)


def source_params_digest(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The params digest of the source run's latest checkpoint, read from disk (no model is built)."""
    directory, step = _source_checkpoints(config, workdir)
    if step is None:
        raise bank_files.BankError(f"model.head.type {config.model.head.type!r} reads a bank: no checkpoint in "
                                   f"{directory} (bank.source_workdir); train the ACAR model first")
    return params_digest(checkpoints.read_checkpoint(directory, step)["params"])


def bank_fingerprint(config: ml_collections.ConfigDict, source_config: ml_collections.ConfigDict, digest: str,
                     split: str, scale: int) -> str:
    from acar_jax.evaluation import bank_extraction  # noqa: PLC0415

    boxes = str(config.bank.get(f"{split}_boxes"))
    return bank_extraction.fingerprint(source_config.model, digest, split, boxes, scale, str(config.bank.content))


@dataclasses.dataclass
class BankInputs:
    """The bank windows a feature-bank run reads: the train bank at data.short_side and one val bank per test
    scale, each opened against its expected fingerprint and checked to hold every video the run will read."""
    content: str
    train: object | None                       # data_pipelines.bank_windows.BankWindows
    val: dict[int, object]

    def window(self, windows, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        from acar_jax.models.acfb import bank_grid_hw  # noqa: PLC0415

        grid = bank_grid_hw(self.content, tuple(np.asarray(batch["clips"]).shape[2:4]))
        return windows.batch(batch["video_id"], batch["timestamp"], batch["clip_mask"], batch["flip"], grid)

    def train_batches(self, batches: Iterator[dict]) -> Iterator[dict]:
        """Each host batch with its clips' windows added (bank, bank_mask), flipped as the clips were."""
        for batch in batches:
            batch["bank"], batch["bank_mask"] = self.window(self.train, batch)
            yield batch

    def eval_inputs(self, batch: dict, view) -> dict[str, np.ndarray]:
        """evaluate_split's bank_inputs: the window from the bank of the view's scale."""
        bank, mask = self.window(self.val[int(view.short_side)], batch)
        return {"bank": bank, "bank_mask": mask}


def open_bank_inputs(config: ml_collections.ConfigDict, workdir: str, splits: Sequence[str]) -> BankInputs | None:
    """The banks a feature-bank config reads for `splits` (None for other heads). Every error (no bank, an
    incomplete one, one of another model, split, boxes or scale, a video missing) names the file and the key."""
    if not config_reads_bank(config):
        return None
    from acar_jax.evaluation import bank_extraction  # noqa: PLC0415
    from data_pipelines.bank_windows import BankWindows  # noqa: PLC0415

    source_config, digest = bank_source_config(config), source_params_digest(config, workdir)
    where = (f"[model.head.type {config.model.head.type!r} reads bank.content {config.bank.content!r} of "
             f"bank.source_workdir={bank_source_workdir(config, workdir)}, bank.dir={config.bank.dir!r}]")

    def open_one(split: str, scale: int):
        root = bank_directory(config, workdir, split, scale)
        try:
            reader = bank_files.BankReader(
                root, fingerprint=bank_fingerprint(config, source_config, digest, split, scale), split=split)
            windows = BankWindows(reader, radius=int(config.bank.window_radius),
                                  whole_video=bool(config.bank.whole_video),
                                  max_entries=int(config.bank.max_entries),
                                  cache_mb=float(config.bank.cache_mb))
            records = ava_files.load_keyframe_records(config.data, split)
            windows.check_covers(r.video_id for r in records)
            boxes = str(config.bank.get(f"{split}_boxes"))
            counts = bank_extraction.entry_counts(bank_extraction.bank_records(config.data, split, boxes))
            windows.check_windows(((r.video_id, r.timestamp) for r in records if r.num_boxes), counts)
        except bank_files.BankError as e:
            raise bank_files.BankError(f"{e} {where}") from None
        return windows

    train = open_one("train", int(config.data.short_side)) if "train" in splits else None
    val = {int(s): open_one("val", int(s)) for s in config.data.eval_scales} if "val" in splits else {}
    return BankInputs(str(config.bank.content), train, val)


def extract_banks(config: ml_collections.ConfigDict, workdir: str, *, hooks: Hooks = Hooks(),
                  after_video: Callable[[str], None] | None = None) -> dict:
    """run.py --mode=extract_bank: the latest checkpoint of the source run (bank_source_workdir), an ACAR model
    (bank_source_config), over every keyframe of every (split, scale) in bank_views, storing bank.content;
    resumes where a previous run stopped."""
    from acar_jax.evaluation import bank_extraction  # noqa: PLC0415 (only this mode needs it)
    from acar_jax.models.acfb import bank_entries_fn  # noqa: PLC0415

    workdir = os.path.abspath(workdir)
    quiet_orbax()
    entries_fn = bank_entries_fn(str(config.bank.content))
    source_config, model, digest = restore_bank_source(config, workdir, hooks.create_model)   # checks first
    prepare_data(config)
    local = Mesh(np.asarray(jax.local_devices()), (parallel.AXIS,))   # each host runs its own videos
    host = lambda tree: jax.tree.map(lambda a: a.addressable_data(0), tree)  # noqa: E731
    weights = jax.device_put((host(model.state.params), host(model.state.batch_stats), host(model.rng_state)),
                             NamedSharding(local, P()))
    graphdef, split_sharding = model.graphdef, NamedSharding(local, P(parallel.AXIS))

    @jax.jit
    def forward(params, batch_stats, rng_state, clip_batch, boxes, valid_hw):
        net = nnx.merge(graphdef, params, batch_stats, rng_state, copy=True)
        return entries_fn(net, clip_batch, boxes, valid_hw)

    def maps_fn(clip_batch, boxes, valid_hw):
        args = [jax.device_put(np.asarray(a), split_sharding) for a in (clip_batch, boxes, valid_hw)]
        maps, eff = forward(*weights, *args)
        return np.asarray(maps), np.asarray(eff)

    batch_size = int(config.bank.batch_size) * jax.local_device_count()
    out = {}
    for split, scale in bank_views(config):
        boxes = str(config.bank.get(f"{split}_boxes"))
        root = bank_directory(config, workdir, split, scale)
        records = bank_extraction.bank_records(config.data, split, boxes)
        fp = bank_fingerprint(config, source_config, digest, split, scale)
        written = bank_extraction.extract_bank(
            records, config.data, maps_fn, root, fingerprint=fp, split=split, dtype=str(config.bank.dtype),
            batch_size=batch_size, scale=scale, process_index=jax.process_index(),
            process_count=jax.process_count(), after_video=after_video)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"bank {root}")
        if jax.process_index() == 0:
            bank_files.mark_complete(root)
        out[f"bank/{os.path.basename(root)}"] = f"{root} ({len(written)} videos written now)"
    return out
