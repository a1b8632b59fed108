"""Checkpoints: an orbax `CheckpointManager` under `workdir/checkpoints`, and init from another checkpoint.

A checkpoint of step s holds {step, params, batch_stats, opt_state} of the TrainState after s steps. The data
iterator's state is the step itself (data_pipelines.clips.TrainInput.iterator(start_step=s) replays exactly the
batches an uninterrupted run would see) and the RNG state is (config.seed, step) (dropout keys are folded from
it), so the step is all the extra state a resumed run needs. Params and statistics are stored as nested dicts keyed
by the module attribute path, so a mismatch names the parameter; optimiser leaves are stored in tree order.
"""

from __future__ import annotations

import logging as pylogging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding

from acar_jax.core.parallel import global_replica
from acar_jax.state.train_state import TrainState

CHECKPOINT_SUBDIR = "checkpoints"
BACKBONE_PREFIX = "backbone"   # params under this top-level attribute of the detector are the backbone


def _to_pure(state: TrainState) -> dict:
    return {"step": state.step, "params": nnx.to_pure_dict(state.params),
            "batch_stats": nnx.to_pure_dict(state.batch_stats),
            "opt_state": {str(i): x for i, x in enumerate(jax.tree.leaves(state.opt_state))}}


def _flat(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _path(p: tuple) -> str:
    return "/".join(map(str, p))


def check_compatible(found: dict, expected: dict, *, what: str, source: str, allow_missing: bool = False) -> None:
    """Raises ValueError naming the first parameter path whose presence or shape differs (both shapes given)."""
    f, e = _flat(found), _flat(expected)
    for p, want in e.items():
        if p not in f:
            if allow_missing:
                continue
            raise ValueError(f"{source}: {what} {_path(p)} is missing from the checkpoint (the model expects shape "
                             f"{tuple(np.shape(want))}); is it a checkpoint of a different model config?")
        if tuple(np.shape(f[p])) != tuple(np.shape(want)):
            raise ValueError(f"{source}: {what} {_path(p)} has shape {tuple(np.shape(f[p]))} in the checkpoint but "
                             f"the model expects {tuple(np.shape(want))}; is it a checkpoint of a different model "
                             "config?")
    extra = sorted(_path(p) for p in f if p not in e)
    if extra and not allow_missing:
        raise ValueError(f"{source}: {what} {extra[0]} (and {len(extra) - 1} more) in the checkpoint do not exist "
                         "in the model; is it a checkpoint of a different model config?")


def _merge(target: nnx.State, pure: dict) -> nnx.State:
    state = jax.tree.map(lambda x: x, target)
    nnx.replace_by_pure_dict(state, pure)
    return state


def _raw_restore(manager: ocp.CheckpointManager, step: int) -> dict:
    """The checkpoint of `step` as host numpy arrays, whatever model or mesh wrote it."""
    meta = manager.item_metadata(step)
    abstract = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), dict(meta))
    raw = dict(manager.restore(step, args=ocp.args.StandardRestore(abstract)))
    for name in ("params", "batch_stats"):  # orbax stores nnx.List indices as strings: back to ints
        raw[name] = _int_keys(raw[name])
    return raw


def _int_keys(tree: dict) -> dict:
    return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(v) if isinstance(v, dict) else v
            for k, v in tree.items()}


def read_checkpoint(directory: str, step: int | None = None) -> dict:
    """{step, params, batch_stats, opt_state} of a checkpoint (latest when `step` is None) as numpy arrays."""
    with ocp.CheckpointManager(os.path.abspath(directory), item_handlers=ocp.StandardCheckpointHandler()) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint steps under {directory}")
        return _raw_restore(manager, step)


def latest_step(directory: str) -> int | None:
    """The latest step under a checkpoints directory; None when it holds none or does not exist (creates
    nothing)."""
    if not os.path.isdir(directory):
        return None
    with ocp.CheckpointManager(os.path.abspath(directory), item_handlers=ocp.StandardCheckpointHandler()) as manager:
        return manager.latest_step()


class _DropOrbaxInfo(pylogging.Filter):
    """orbax logs every save step at INFO; keep its warnings and errors only."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops orbax's per-save INFO lines from the absl log."""
    handler_logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in handler_logger.filters):
        handler_logger.addFilter(_DropOrbaxInfo())


class Checkpointer:
    """Saves every `every_steps` steps (async), keeps `max_to_keep`, restores the latest."""

    def __init__(self, workdir: str, *, every_steps: int, max_to_keep: int):
        if every_steps < 1 or max_to_keep < 1:
            raise ValueError(f"checkpoint.every_steps ({every_steps}) and max_to_keep ({max_to_keep}) must be >= 1")
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
        self.every_steps = int(every_steps)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                                 enable_async_checkpointing=True),
            item_handlers=ocp.StandardCheckpointHandler())  # a fresh process can read the metadata to resume

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, *, force: bool = False) -> bool:
        """Starts an async save of `state` when its step is a multiple of every_steps (or `force`)."""
        step = int(state.step)
        if not force and step % self.every_steps:
            return False
        if step in self.manager.all_steps():
            return False
        return self.manager.save(step, args=ocp.args.StandardSave(_to_pure(state)), force=True)

    def restore(self, target: TrainState) -> TrainState:
        """The latest checkpoint loaded into the structure (and shardings) of `target`."""
        step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        raw = _raw_restore(self.manager, step)
        source = os.path.join(self.directory, str(step))
        check_compatible(raw["params"], nnx.to_pure_dict(target.params), what="parameter", source=source)
        check_compatible(raw["batch_stats"], nnx.to_pure_dict(target.batch_stats), what="BatchNorm statistic",
                         source=source)
        leaves, treedef = jax.tree.flatten(target.opt_state)
        found = [raw["opt_state"][str(i)] for i in range(len(raw["opt_state"]))]
        if [np.shape(x) for x in found] != [np.shape(x) for x in leaves]:
            raise ValueError(f"{source}: optimiser state does not match the optimiser of this config")
        state = TrainState(step=np.asarray(raw["step"], np.int32), params=_merge(target.params, raw["params"]),
                           batch_stats=_merge(target.batch_stats, raw["batch_stats"]),
                           opt_state=jax.tree.unflatten(treedef, found))
        return jax.tree.map(lambda new, old: global_replica(np.asarray(new, old.dtype), old.sharding), state, target)

    def wait(self) -> None:
        """Blocks until every started save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def init_from(target: TrainState, path: str, *, scope: str) -> TrainState:
    """`target` with params (and statistics) from the latest checkpoint under `path` (a run's workdir, its
    `checkpoints` dir, or a converted checkpoint written by `write_model_checkpoint`).

    scope "full": every parameter and statistic must match; "backbone": only those under `backbone/` are taken
    (the head keeps its fresh initialisation, as the reference's Kinetics-pretrained start); "shared": every
    one whose path and shape the checkpoint also has (a bank head started from its ACAR source run: the
    backbone and the head's parameters of the same name; the others keep their fresh values, and are logged).
    The optimiser state and step are not taken: fine-tuning starts at step 0.
    """
    if scope not in ("full", "backbone", "shared"):
        raise ValueError(f"checkpoint.init_scope must be 'full', 'backbone' or 'shared', got {scope!r}")
    raw, source = read_latest(path, what="checkpoint.init_from")
    return _take(target, raw, source, scope)


def read_latest(path: str, *, what: str) -> tuple[dict, str]:
    """(the raw latest checkpoint under `path`, its step directory): `path` is a run's workdir, its
    `checkpoints` dir or a converted checkpoint; `what` names the setting in the errors."""
    directory = os.path.abspath(path)
    if os.path.isdir(os.path.join(directory, CHECKPOINT_SUBDIR)):
        directory = os.path.join(directory, CHECKPOINT_SUBDIR)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what}: {path} is not a directory")
    with ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler()) as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{what}: no checkpoint steps under {directory}")
        raw = _raw_restore(manager, step)
    return raw, os.path.join(directory, str(step))


def _take(target: TrainState, raw: dict, source: str, scope: str) -> TrainState:
    """`target` with the params and statistics of `raw` that `scope` takes (see init_from)."""
    params, stats = nnx.to_pure_dict(target.params), nnx.to_pure_dict(target.batch_stats)
    if scope == "backbone":
        if BACKBONE_PREFIX not in raw["params"]:
            raise ValueError(f"{source}: no '{BACKBONE_PREFIX}' parameters to initialise the backbone from")
        found_p = {BACKBONE_PREFIX: raw["params"][BACKBONE_PREFIX]}
        found_s = {BACKBONE_PREFIX: raw["batch_stats"].get(BACKBONE_PREFIX, {})}
        params = {BACKBONE_PREFIX: params[BACKBONE_PREFIX]}
        stats = {BACKBONE_PREFIX: stats.get(BACKBONE_PREFIX, {})}
    elif scope == "shared":
        (found_p, params), fresh_p = _shared(raw["params"], params)
        (found_s, stats), fresh_s = _shared(raw["batch_stats"], stats)
        logging.info("init_scope shared: %d parameter paths kept fresh (not in %s with that shape): %s",
                     len(fresh_p + fresh_s), source, ", ".join(fresh_p + fresh_s) or "none")
    else:
        found_p, found_s = raw["params"], raw["batch_stats"]
    check_compatible(found_p, params, what="parameter", source=source)
    check_compatible(found_s, stats, what="BatchNorm statistic", source=source)
    new_params = _merge(target.params, _cast(found_p, params))
    new_stats = _merge(target.batch_stats, _cast(found_s, stats))
    logging.info("initialised %s from %s (scope %s)", "parameters", source, scope)
    return target.replace(params=_like(new_params, target.params), batch_stats=_like(new_stats, target.batch_stats))


def _shared(found: dict, like: dict, prefix: str = "") -> tuple[tuple[dict, dict], list[str]]:
    """((found, like) restricted to the paths both hold with equal shapes, paths of `like` left out)."""
    got, want, fresh = {}, {}, []
    for key, value in like.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            if isinstance(found.get(key), dict):
                (g, w), f = _shared(found[key], value, f"{path}/")
                if w:
                    got[key], want[key] = g, w
                fresh += f
            else:
                fresh.append(path)
        elif key in found and not isinstance(found[key], dict) and \
                tuple(np.shape(found[key])) == tuple(np.shape(value)):
            got[key], want[key] = found[key], value
        else:
            fresh.append(path)
    return (got, want), fresh


def _cast(found: dict, like: dict) -> dict:
    return {k: _cast(found[k], v) if isinstance(v, dict) else np.asarray(found[k], np.asarray(v).dtype)
            for k, v in like.items()}


def _like(tree, target):
    def put(new, old):
        sharding = getattr(old, "sharding", None)
        host = np.asarray(new, old.dtype)
        return global_replica(host, sharding) if isinstance(sharding, NamedSharding) else jax.device_put(host)
    return jax.tree.map(put, tree, target)


def write_model_checkpoint(directory: str, params: nnx.State, batch_stats: nnx.State) -> None:
    """Writes params + statistics (step 0, no optimiser state) in the layout `init_from` and `api.load_model`
    read; for converted weights."""
    with ocp.CheckpointManager(os.path.abspath(directory), options=ocp.CheckpointManagerOptions(create=True)) as m:
        m.save(0, args=ocp.args.StandardSave({"step": np.zeros((), np.int32),
                                              "params": nnx.to_pure_dict(params),
                                              "batch_stats": nnx.to_pure_dict(batch_stats), "opt_state": {}}))
        m.wait_until_finished()


def load_model_state(directory: str, params: nnx.State, batch_stats: nnx.State
                     ) -> tuple[nnx.State, nnx.State, int]:
    """(params, batch_stats, step) of the latest checkpoint under `directory`, every parameter and statistic
    checked against the given model state; the optimiser state is not read into anything."""
    raw, source = read_latest(directory, what="checkpoint")
    target = TrainState(step=np.zeros((), np.int32), params=params, batch_stats=batch_stats, opt_state=())
    state = _take(target, raw, source, "full")
    return state.params, state.batch_stats, int(raw["step"])
