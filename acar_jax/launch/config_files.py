"""Experiment config files: load `get_config()` of a configs/*.py path, and check dotted override keys.

The one loader that run.py, acar_jax.api and tools/sweep.py share, so that a misspelt field is the same clear
error everywhere: it names the override, the config node that lacks the field, the file, and the fields it has.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable

import ml_collections


class ConfigKeyError(KeyError):
    """An override names a field the config does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


def load_config(config: str | os.PathLike | ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A ConfigDict as given, or `get_config()` of a config file path (its folder's parent is importable, so
    `from configs import default` inside it works from any working directory)."""
    if isinstance(config, ml_collections.ConfigDict):
        return config
    path = os.path.abspath(os.fspath(config))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {os.fspath(config)} does not exist (expected e.g. configs/default.py)")
    root = os.path.dirname(os.path.dirname(path))
    if root not in sys.path:
        sys.path.append(root)
    spec = importlib.util.spec_from_file_location(f"_acar_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {os.fspath(config)} has no get_config()")
    return module.get_config()


def check_override_keys(config: ml_collections.ConfigDict, keys: Iterable[str], *, source: str) -> None:
    """Raises ConfigKeyError for the first dotted key (`train.batch_size`, `data.eval_scales[0]`) that is not a
    field of `config`; `source` names the config file in the message."""
    for dotted in keys:
        parts = [k.split("[", 1)[0] for k in dotted.split(".")]
        node = config
        for i, key in enumerate(parts):
            if not hasattr(node, "keys") or key not in node:
                where = ".".join(["config"] + parts[:i])
                known = sorted(node.keys()) if hasattr(node, "keys") else []
                raise ConfigKeyError(f"--config.{dotted}: {where} has no field {key!r} (config file {source}); "
                                     f"its fields: {known}")
            node = node[key]


def override_keys(argv: Iterable[str]) -> list[str]:
    """The dotted keys of the `--config.a.b=v` arguments of a command line."""
    return [arg[len("--config."):].split("=", 1)[0] for arg in argv if arg.startswith("--config.")]
