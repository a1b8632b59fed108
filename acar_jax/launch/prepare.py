"""What a run does before its first step: the built-in datasets generated (and packed) when the config asks
for them, then one check of the data files the run will read, so that a user's mistake is one line naming the
`config.data.*` field before any model is built."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from acar_jax.core import parallel
from data_pipelines import ava_files, bank_files, packed_clips, sources, synthetic

# Errors in what the user gave (config values, data files): run.py prints their one-line message, no traceback.
USER_INPUT_ERRORS = (ava_files.MissingDataError, ava_files.AvaFormatError, parallel.BatchSizeError,
                     sources.DataSourceError, packed_clips.NotPreparedError, packed_clips.ShardsConfigError,
                     bank_files.BankError)


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


def prepare_run(config: ml_collections.ConfigDict, splits: Sequence[str]) -> None:
    """prepare_data, then the check that every file of `splits` the run reads exists (frames or packed shards,
    as config.data.source says): raises the USER_INPUT_ERRORS run.py prints as one line."""
    prepare_data(config)
    sources.check_data_files(config.data, tuple(splits))
