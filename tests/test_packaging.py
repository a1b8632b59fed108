"""What `pip install .` ships: the label map as declared package data, and the console script's target."""

from __future__ import annotations

import importlib
import tomllib

from tests.helpers import paths

REPO = paths.REPO
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_label_map_is_declared_package_data():
    from acar_jax.evaluation.ava_metric import DEFAULT_LABEL_MAP

    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["acar_jax"]
    shipped = {p for pattern in patterns for p in (REPO / "acar_jax").glob(pattern)}
    assert DEFAULT_LABEL_MAP.resolve() in {p.resolve() for p in shipped}


def test_every_console_script_names_a_callable():
    for name, target in PYPROJECT["project"]["scripts"].items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
