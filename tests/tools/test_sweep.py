"""tools/sweep.py expands a grid into run.py commands with separate workdirs whose `--config.x=y` flags
produce exactly the swept configs; typos and malformed sweep files fail before anything runs."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from tests.helpers import paths
from tools import sweep

ROOT = paths.REPO
DEFAULT = str(ROOT / "configs" / "default.py")


def parse(command: list[str]):
    """The config run.py would build from this command's --config flags (config_flags, as run.py)."""
    argv = ["run.py", *command[2:]]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
    flags.DEFINE_string("mode", None, "", flag_values=flag_values)
    flag_values(argv)
    return flag_values.config, flag_values.workdir, flag_values.mode


def test_default_lr_expands_to_the_product_with_separate_workdirs(tmp_path):
    commands = sweep.expand(ROOT / "configs/sweeps/default_lr.py", DEFAULT, tmp_path)
    assert len(commands) == 6
    seen = set()
    for command in commands:
        assert command[1] == str(ROOT / "run.py")
        config, workdir, mode = parse(command)
        assert pathlib.Path(workdir).parent == tmp_path and mode == "train_and_eval"
        seen.add((config.train.schedule.warmup_lr, config.seed))
    assert seen == {(lr, s) for lr in (1e-3, 2e-3, 4e-3) for s in (0, 1)}
    assert len({parse(c)[1] for c in commands}) == 6


def test_every_shipped_sweep_expands(tmp_path):
    for path in sorted((ROOT / "configs/sweeps").glob("*.py")):
        if path.name != "__init__.py":
            assert sweep.expand(path, DEFAULT, tmp_path), path


def test_tuple_and_string_values_round_trip(tmp_path):
    sweep_file = tmp_path / "grid.py"
    sweep_file.write_text(
        "def get_sweep():\n"
        "    return [{'data.eval_scales': (96, 112), 'data.eval_flip': True, 'model.head.type': 'linear'},\n"
        "            {'data.eval_scales': (96,), 'data.eval_flip': False, 'model.head.type': 'acar'}]\n")
    commands = sweep.expand(sweep_file, DEFAULT, tmp_path / "runs", mode="eval")
    first, second = (parse(c)[0] for c in commands)
    assert (first.data.eval_scales, first.data.eval_flip, first.model.head.type) == ((96, 112), True,
                                                                                      "linear")
    assert (second.data.eval_scales, second.data.eval_flip, second.model.head.type) == ((96,), False,
                                                                                         "acar")
    assert parse(commands[0])[2] == "eval"


@pytest.mark.parametrize("body, error, match", [
    ("def get_sweep():\n    return [{'train.schedule.lr_typo': 1}]\n", KeyError, "lr_typo.*has no field"),
    ("def get_sweep():\n    return []\n", ValueError, "non-empty list"),
    ("def get_sweep():\n    return [('seed', 1)]\n", ValueError, "point 0 must be a dict"),
    ("x = 1\n", AttributeError, "no get_sweep"),
])
def test_bad_sweep_files_fail_clearly(tmp_path, body, error, match):
    sweep_file = tmp_path / "bad.py"
    sweep_file.write_text(body)
    with pytest.raises(error, match=match):
        sweep.expand(sweep_file, DEFAULT, tmp_path)


def test_missing_sweep_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        sweep.expand(tmp_path / "nope.py", DEFAULT, tmp_path)


def test_dry_run_cli_prints_commands_and_runs_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/sweep.py"), "--sweep=configs/sweeps/default_heads.py",
         "--base_config=configs/default.py", f"--workdir_root={tmp_path / 'runs'}", "--dry_run"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 6 and lines[0].startswith("[1/6] ")
    assert "--config.model.head.type=linear" in result.stdout and "--config.seed=2" in result.stdout
    assert not (tmp_path / "runs").exists()
