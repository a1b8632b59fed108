"""Expands a hyperparameter grid into `run.py` invocations, one workdir per point, run one after another.

  python tools/sweep.py --sweep=configs/sweeps/default_lr.py --base_config=configs/default.py \
      --workdir_root=runs/sweep [--mode=train_and_eval] [--dry_run] [--keep_going]

The sweep file's `get_sweep()` returns a list of dicts {dotted config path: value}; each becomes
`--config.<path>=<value>` flags and the workdir `<workdir_root>/<index>_<path>=<value>_...`. Re-running the
same command resumes every run from its own checkpoint (run.py resumes by re-running), so an interrupted sweep
continues where it stopped. `--dry_run` prints the commands and runs nothing.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # sweep and config files import `configs.*`
    sys.path.insert(0, str(ROOT))

from acar_jax.launch import config_files  # noqa: E402

_SWEEP = flags.DEFINE_string("sweep", None, "Python file whose get_sweep() returns a list of override dicts.")
_BASE_CONFIG = flags.DEFINE_string("base_config", "configs/default.py", "config file every run starts from.")
_WORKDIR_ROOT = flags.DEFINE_string("workdir_root", None, "each run writes to a subdirectory of this.")
_MODE = flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"], "run.py --mode.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the run.py commands instead of running them.")
_KEEP_GOING = flags.DEFINE_bool("keep_going", False, "continue with the next run when one fails.")


def load_module(path: str | pathlib.Path, what: str):
    """Imports a Python file by path; a missing file is an error naming it and its role."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_sweep_{what}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_sweep(path: str | pathlib.Path) -> list[dict[str, object]]:
    """Calls the file's get_sweep() and checks it returns a non-empty list of dicts with string keys."""
    module = load_module(path, "sweep")
    if not hasattr(module, "get_sweep"):
        raise AttributeError(f"sweep file {path} defines no get_sweep()")
    points = module.get_sweep()
    if not isinstance(points, Sequence) or not points:
        raise ValueError(f"sweep file {path}: get_sweep() must return a non-empty list of dicts, "
                         f"got {points!r}")
    for i, point in enumerate(points):
        if not isinstance(point, Mapping) or not all(isinstance(k, str) for k in point):
            raise ValueError(f"sweep file {path}: point {i} must be a dict of dotted config paths, "
                             f"got {point!r}")
    return [dict(p) for p in points]


def check_overrides(points: Sequence[Mapping[str, object]], base_config: str | pathlib.Path,
                    sweep_path: str | pathlib.Path) -> None:
    """Every swept path must be a field of the base config: a typo fails here, before any run starts."""
    keys = sorted({k for p in points for k in p})
    try:
        config_files.check_override_keys(config_files.load_config(base_config), keys, source=str(base_config))
    except config_files.ConfigKeyError as e:
        raise config_files.ConfigKeyError(f"sweep file {sweep_path}: {e}") from None


def format_value(value: object) -> str:
    """The text after `--config.x=`: strings as they are, everything else as its Python literal."""
    return value if isinstance(value, str) else repr(value)


def run_name(index: int, point: Mapping[str, object]) -> str:
    """A readable, filesystem-safe workdir name, unique by its index."""
    parts = [f"{key.split('.')[-1]}={format_value(value)}" for key, value in point.items()]
    name = f"{index:03d}_" + "_".join(parts)
    return re.sub(r"[^A-Za-z0-9=._+-]+", "", name.replace(", ", "-"))


def expand(sweep_path: str | pathlib.Path, base_config: str | pathlib.Path, workdir_root: str | pathlib.Path,
           mode: str = "train_and_eval", python: str = sys.executable) -> list[list[str]]:
    """The run.py command (argv list) of every point of the sweep, in order."""
    points = load_sweep(sweep_path)
    check_overrides(points, base_config, sweep_path)
    commands = []
    for index, point in enumerate(points):
        workdir = pathlib.Path(workdir_root) / run_name(index, point)
        command = [python, str(ROOT / "run.py"), f"--config={base_config}", f"--workdir={workdir}",
                   f"--mode={mode}"]
        command += [f"--config.{key}={format_value(value)}" for key, value in point.items()]
        commands.append(command)
    return commands


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _SWEEP.value or not _WORKDIR_ROOT.value:
        raise app.UsageError("--sweep and --workdir_root are required")
    commands = expand(_SWEEP.value, _BASE_CONFIG.value, _WORKDIR_ROOT.value, _MODE.value)
    failures = []
    for i, command in enumerate(commands):
        print(f"[{i + 1}/{len(commands)}] {shlex.join(command)}", flush=True)
        if _DRY_RUN.value:
            continue
        returncode = subprocess.run(command, check=False).returncode
        if returncode != 0:
            failures.append((i, returncode))
            if not _KEEP_GOING.value:
                break
    if failures:
        sys.exit(f"sweep: {len(failures)} run(s) failed (index, exit code): {failures}")


if __name__ == "__main__":
    app.run(main)
