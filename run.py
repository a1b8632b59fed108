"""Entry point: `python run.py [--config=configs/<name>.py] [--config.x=y ...] [--workdir=DIR] [--mode=...]`.

With no flags it runs configs/default.py: generates the synthetic dataset if absent, trains the tiny SlowFast +
ACAR model and evaluates it, writing checkpoints, TensorBoard logs and the AVA result CSV under runs/default.
Re-running the same command resumes from the latest checkpoint. This file only parses flags.
"""

from __future__ import annotations

import functools
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")


def _define_flags() -> None:
    """Flags are defined after argv is checked: DEFINE_config_file already applies `--config.x=y` overrides."""
    global _CONFIG, _WORKDIR, _MODE, _COORDINATOR, _NUM_PROCESSES, _PROCESS_ID
    _CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "experiment config file (configs/*.py)",
                                              lock_config=True)
    _WORKDIR = flags.DEFINE_string("workdir", None, "output directory (default: runs/<config file name>)")
    _MODE = flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval", "extract_bank", "demo"],
                               "what to run (extract_bank: the ACFB feature bank of a trained ACAR run; demo: "
                               "config.demo.video -> actions.csv + annotated.mp4)")
    _COORDINATOR = flags.DEFINE_string("coordinator_address", "", "multi-host: host:port of process 0")
    _NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "multi-host: number of processes")
    _PROCESS_ID = flags.DEFINE_integer("process_id", -1, "multi-host: this process's index")


def _workdir() -> str:
    if _WORKDIR.value:
        return _WORKDIR.value
    name = os.path.splitext(os.path.basename(config_flags.get_config_filename(flags.FLAGS["config"])))[0]
    return os.path.join("runs", name)


def _config_path(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return _DEFAULT_CONFIG


def _check_argv(argv: list[str]) -> None:
    """Exits with one clear line (status 1) for an unknown config file or an override of a missing field."""
    path = _config_path(argv)
    if not os.path.isfile(path):
        sys.exit(f"--config={path}: no such config file (the configs are in {os.path.dirname(_DEFAULT_CONFIG)}, "
                 "e.g. --config=configs/default.py)")
    from acar_jax.launch import config_files  # noqa: PLC0415 (light: ml_collections only)

    try:
        config_files.check_override_keys(config_files.load_config(path), config_files.override_keys(argv),
                                         source=path)
    except config_files.ConfigKeyError as e:
        sys.exit(str(e))


def main(argv: list[str], hooks_factory=None) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_experiment(_CONFIG.value, hooks_factory() if hooks_factory else None)


def run_experiment(config, hooks=None) -> None:
    """Runs --mode on `config` and prints the metrics; `hooks` (acar_jax.training.loop.Hooks) for test stand-ins.
    A user's mistake (a config value, a data file, a bank) exits with one line naming it, status 1."""
    from acar_jax.launch import distributed  # noqa: PLC0415 (flags are parsed before jax / tensorflow load)

    distributed.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from acar_jax.launch.prepare import USER_INPUT_ERRORS  # noqa: PLC0415
    from acar_jax.training import loop  # noqa: PLC0415

    hooks = loop.Hooks() if hooks is None else hooks
    workdir = _workdir()
    logging.info("config %s, workdir %s, mode %s", config_flags.get_config_filename(flags.FLAGS["config"]),
                 workdir, _MODE.value)
    if _MODE.value == "demo":
        _run_demo(config, workdir, hooks)
        return
    try:
        metrics = _run_mode(config, workdir, hooks)
    except USER_INPUT_ERRORS as e:
        sys.exit(f"error: {e}")      # the message names the config field or file and line; no traceback
    for key, value in sorted(metrics.items()):
        print(f"{key}: {value}")


def _run_mode(config, workdir: str, hooks) -> dict:
    from acar_jax.training import loop  # noqa: PLC0415

    if _MODE.value == "eval":
        from acar_jax.training.evaluate import evaluate_checkpoint  # noqa: PLC0415

        return evaluate_checkpoint(config, workdir, create=hooks.create_model)
    if _MODE.value == "extract_bank":
        from acar_jax.bank.extraction import extract_banks  # noqa: PLC0415
        from data_pipelines.bank_files import BankError  # noqa: PLC0415

        try:
            return extract_banks(config, workdir, create=hooks.create_model)
        except (FileNotFoundError, BankError) as e:   # no source run, no detections CSV: one line, status 1
            sys.exit(str(e))
    if _MODE.value == "train_and_eval" and config.bank.chain:
        from acar_jax.training import chain  # noqa: PLC0415

        return chain.run_chain(config, workdir, hooks=hooks)
    return loop.train_and_evaluate(config, workdir, final_eval=_MODE.value == "train_and_eval", hooks=hooks)


def _run_demo(config, workdir: str, hooks) -> None:
    """--mode=demo; bad input (video, boxes CSV, config) exits with one line, status 1."""
    from acar_jax.inference import demo  # noqa: PLC0415
    from data_pipelines.ava_files import AvaFormatError  # noqa: PLC0415

    try:
        result = demo.run_demo(config, workdir, create=hooks.create_model)
    except (demo.DemoError, AvaFormatError, FileNotFoundError, ImportError) as e:
        sys.exit(f"demo: {e}")
    print(f"actions: {result.actions_csv}\nannotated video: {result.annotated}\n{result.keyframes} keyframes, "
          f"{result.boxes} boxes, {result.keyframes_per_second:.2f} keyframes/s (model, compile included)")


def cli(hooks_factory=None) -> None:
    """The command line: check argv (config file, override names), define the flags, run `main`.
    `hooks_factory() -> acar_jax.training.loop.Hooks` (called after flag parsing) is for test entry points."""
    _check_argv(sys.argv)
    _define_flags()
    app.run(functools.partial(main, hooks_factory=hooks_factory))


if __name__ == "__main__":
    from acar_jax.launch.host_memory import reexec_with_huge_pages

    reexec_with_huge_pages("run.py")   # transparent huge pages for XLA's host buffers (acar_jax/launch/host_memory.py)
    cli()
