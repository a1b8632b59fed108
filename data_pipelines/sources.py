"""Where a run's clips come from: `config.data.source` = "frames" (the extracted JPEG folders, or mp4 clips) or
"tfds" (the packed shards of `config.data.tfds_dir`, data_pipelines/packed_clips.py). Both give the same keyframe
records and the same batches; only where clips.py reads a clip's frames differs."""

from __future__ import annotations

import ml_collections

from data_pipelines import ava_files
from data_pipelines.records import KeyframeRecord

SOURCES = ("frames", "tfds")


class DataSourceError(ValueError):
    """`config.data.source` is not one of SOURCES."""

# With packed shards, training reads no annotation file or frame; scoring the val split still reads these.
_SCORING_FIELDS = ("label_map", "val_csv", "exclusions", "kinetics_val_csv")


def data_source(data_config: ml_collections.ConfigDict) -> str:
    """`config.data.source`, checked."""
    source = data_config.source
    if source not in SOURCES:
        raise DataSourceError(f"config.data.source must be one of {SOURCES}, got {source!r}")
    return source


def keyframe_records(data_config: ml_collections.ConfigDict, split: str) -> list[KeyframeRecord]:
    """The split's keyframe records, read from the annotation files and frame folders, or from the prepared
    shards' index."""
    if data_source(data_config) == "tfds":
        from data_pipelines import packed_clips  # noqa: PLC0415

        return packed_clips.load_records(data_config, split)
    return ava_files.load_keyframe_records(data_config, split)


def check_data_files(data_config: ml_collections.ConfigDict, splits=("train", "val"), *,
                     scoring: bool = True) -> None:
    """ava_files.check_data_files for frames; for shards, that every split is prepared for this config and that
    the files scoring the val split reads exist. Errors name the `config.data` field."""
    if data_source(data_config) == "frames":
        ava_files.check_data_files(data_config, splits, scoring=scoring)
        return
    from data_pipelines import packed_clips  # noqa: PLC0415

    packed_clips.check_prepared(data_config, splits)
    if "val" in splits and scoring:
        scored = ml_collections.ConfigDict(data_config.to_dict())
        for name, value in data_config.items():
            if isinstance(value, str) and name not in _SCORING_FIELDS + ("dataset", "root", "source", "tfds_dir"):
                scored[name] = ""
        ava_files.check_data_files(scored, ("val",), scoring=True)
