"""Hyperparameter grids: each module's `get_sweep()` returns a list of override dicts for tools/sweep.py."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence


def product(axes: Mapping[str, Sequence]) -> list[dict[str, object]]:
    """The cartesian product of named axes, e.g. {"seed": [0, 1], "train.schedule.warmup_lr": [0.032, 0.064]}.

    Keys are dotted config paths (as after `--config.`); the first axis varies slowest.
    """
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(axes[n] for n in names))]
