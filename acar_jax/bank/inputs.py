"""The feature bank a bank-head run reads: where it comes from (the source ACAR run: its config, workdir,
weights), where it lives, the fingerprint that ties it to those weights, and its windows in the batches.

A bank names the exact weights, split, boxes and scale it was extracted with (its fingerprint); a run opens it
against the fingerprint it expects from the source run's latest checkpoint, so a bank of another model, split,
boxes or scale is refused with the file and the key named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from acar_jax.bank import bank_records, entries
from acar_jax.state import checkpoints
from data_pipelines import ava_files, bank_files
from data_pipelines.bank_windows import BankWindows

BANK_HEADS = ("acfb", "lfb")      # head types that read a feature bank
CHAIN_SOURCE_DIR = "acar"         # the chain's ACAR run: <workdir>/acar (acar_jax/training/chain.py)


def config_reads_bank(config: ml_collections.ConfigDict) -> bool:
    return str(config.model.head.type) in BANK_HEADS


def bank_source_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config of the ACAR run a bank comes from: `config` itself for an ACAR head; for a feature-bank head,
    the model, train recipe and checkpoint fields of `bank.source_config` (the source's config, imported by the
    config file) with this config's data, synthetic set, seed and bank fields (`bank.source_num_steps` > 0
    replaces its number of steps)."""
    if not config_reads_bank(config):
        return config
    source = config.bank.source_config
    if not source.keys():
        raise bank_files.BankError(f"bank.source_config: model.head.type {config.model.head.type!r} reads a bank; "
                                   "set it to the config of the ACAR run the bank comes from (in the config "
                                   "file: `bank.source_config = ava_slowfast_r50_acar.get_config()`)")
    if str(source.model.head.type) != "acar":
        raise bank_files.BankError(f"bank.source_config: its model.head.type is {source.model.head.type!r}; a "
                                   "bank comes from an ACAR model ('acar')")
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


def bank_boxes(config: ml_collections.ConfigDict, split: str) -> str:
    """The boxes the bank of `split` is extracted on: bank.train_boxes or bank.val_boxes."""
    return str(config.bank.train_boxes if split == "train" else config.bank.val_boxes)


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


def source_checkpoint_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The source run's checkpoint directory, or a BankError naming bank.source_workdir when it holds none."""
    directory = os.path.join(bank_source_workdir(config, workdir), checkpoints.CHECKPOINT_SUBDIR)
    if checkpoints.latest_step(directory) is None:
        raise bank_files.BankError(f"model.head.type {config.model.head.type!r} reads a bank: no checkpoint in "
                                   f"{directory} (bank.source_workdir); train the ACAR model first")
    return directory


def source_params_digest(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The params digest of the source run's latest checkpoint, read from disk (no model is built)."""
    return params_digest(checkpoints.read_checkpoint(source_checkpoint_dir(config, workdir))["params"])


def bank_fingerprint(config: ml_collections.ConfigDict, source_config: ml_collections.ConfigDict, digest: str,
                     split: str, scale: int) -> str:
    return bank_records.fingerprint(source_config.model, digest, split, bank_boxes(config, split), scale,
                                  str(config.bank.content))


@dataclasses.dataclass
class BankInputs:
    """The bank windows a feature-bank run reads: the train bank at data.short_side and one val bank per test
    scale, each opened against its expected fingerprint and checked to hold every video the run will read."""
    content: str
    train: BankWindows | None
    val: dict[int, BankWindows]

    def window(self, windows: BankWindows, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        grid = entries.bank_grid_hw(self.content, tuple(np.asarray(batch["clips"]).shape[2:4]))
        return windows.batch(batch["video_id"], batch["timestamp"], batch["clip_mask"], batch["flip"], grid)

    def train_batches(self, batches: Iterator[dict]) -> Iterator[dict]:
        """Each host batch with its clips' windows added (bank, bank_mask), flipped as the clips were."""
        for batch in batches:
            batch["bank"], batch["bank_mask"] = self.window(self.train, batch)
            yield batch

    def eval_inputs(self, batch: dict, view) -> dict[str, np.ndarray]:
        """The evaluator's bank_inputs: the window from the bank of the view's scale."""
        bank, mask = self.window(self.val[int(view.short_side)], batch)
        return {"bank": bank, "bank_mask": mask}


def open_bank_inputs(config: ml_collections.ConfigDict, workdir: str, splits: Sequence[str]) -> BankInputs | None:
    """The banks a feature-bank config reads for `splits` (None for other heads). Every error (no bank, an
    incomplete one, one of another model, split, boxes or scale, a video missing) names the file and the key."""
    if not config_reads_bank(config):
        return None
    source_config, digest = bank_source_config(config), source_params_digest(config, workdir)
    where = (f"[model.head.type {config.model.head.type!r} reads bank.content {config.bank.content!r} of "
             f"bank.source_workdir={bank_source_workdir(config, workdir)}, bank.dir={config.bank.dir!r}]")

    def open_one(split: str, scale: int) -> BankWindows:
        root = bank_directory(config, workdir, split, scale)
        try:
            reader = bank_files.BankReader(
                root, fingerprint=bank_fingerprint(config, source_config, digest, split, scale), split=split)
            windows = BankWindows(reader, radius=int(config.bank.window_radius),
                                  whole_video=bool(config.bank.whole_video),
                                  max_entries=int(config.bank.max_entries),
                                  cache_mb=float(config.bank.cache_mb))
            keyframes = ava_files.load_keyframe_records(config.data, split)
            windows.check_covers(r.video_id for r in keyframes)
            counts = bank_records.entry_counts(bank_records.bank_records(config.data, split, bank_boxes(config, split)))
            windows.check_windows(((r.video_id, r.timestamp) for r in keyframes if r.num_boxes), counts)
        except bank_files.BankError as e:
            raise bank_files.BankError(f"{e} {where}") from None
        return windows

    train = open_one("train", int(config.data.short_side)) if "train" in splits else None
    val = {int(s): open_one("val", int(s)) for s in config.data.eval_scales} if "val" in splits else {}
    return BankInputs(str(config.bank.content), train, val)
