"""Bank extraction (run.py --mode=extract_bank): a trained ACAR model over every keyframe of a split, each
actor's entry (bank.content: first-order map or actor feature) saved.

  records of the split (boxes from `bank.boxes`: ground truth, or a detections CSV in the AVA proposal format)
  -> per video, the eval input pipeline at the bank's scale, unflipped (every keyframe once, fixed batches)
  -> maps_fn -> each real actor's map cropped to its clip's grid -> data_pipelines.bank_files (one file per
     video, renamed into place when whole; the manifest says complete when every video is written).
Videos are split over hosts (video i goes to process i % count); each host shards its batches over its own
devices, so no host waits on another until the end. A video's batches depend only on that video, so a resumed
run writes exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from acar_jax.bank import bank_records, inputs
from acar_jax.bank.entries import bank_entries_fn
from acar_jax.core import parallel
from acar_jax.launch.prepare import prepare_data
from acar_jax.models.detector import create_model
from acar_jax.state import checkpoints
from acar_jax.state.restore import ModelFactory, restore_model
from data_pipelines import ava_files, bank_files, clips
from data_pipelines.records import KeyframeRecord

MapsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def extract_video(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, maps_fn: MapsFn, *,
                  batch_size: int, scale: int) -> list[bank_files.Entry]:
    """Every keyframe of one video through maps_fn: one Entry per keyframe with its surviving actors' maps."""
    by_key = {(r.video_id, int(r.timestamp)): r for r in records}
    entries = []
    for batch in clips.eval_batches(records, data_config, batch_size=batch_size, scale=scale, flip=False):
        maps, eff = maps_fn(batch["clips"], batch["boxes"], batch["valid_hw"])
        maps, eff = np.asarray(maps), np.asarray(eff)
        for c in np.flatnonzero(np.asarray(batch["clip_mask"], bool)):
            rec = by_key[(str(batch["video_id"][c]), int(batch["timestamp"][c]))]
            keep = np.flatnonzero(np.asarray(batch["box_mask"][c], bool)[:rec.num_boxes])
            eh, ew = (int(v) for v in eff[c])
            entries.append(bank_files.Entry(int(rec.timestamp), rec.boxes[keep].astype(np.float32),
                                            maps[c, keep, :eh, :ew]))
    return entries


def extract_bank(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, maps_fn: MapsFn,
                 root: str, *, fingerprint: str, split: str, dtype: str, batch_size: int, scale: int,
                 process_index: int = 0, process_count: int = 1,
                 after_video: Callable[[str], None] | None = None) -> list[str]:
    """Writes this process's videos that are not written yet; returns the videos it wrote."""
    by_video: dict[str, list[KeyframeRecord]] = collections.defaultdict(list)
    for r in records:
        by_video[r.video_id].append(r)
    videos = sorted(by_video)
    if not videos:
        raise ValueError(f"bank split {split!r}: no keyframes to extract under {data_config.root}")
    bank_files.start_bank(root, fingerprint=fingerprint, split=split, dtype=dtype, videos=videos)
    done = bank_files.finished_videos(root)
    mine = [v for i, v in enumerate(videos) if i % process_count == process_index and v not in done]
    logging.info("bank %s: %d videos, %d already written, %d to extract on process %d", root, len(videos),
                 len(done & set(videos)), len(mine), process_index)
    written = []
    for video in tqdm(mine, desc=f"bank {split}", unit="video", disable=process_index > 0):
        entries = extract_video(by_video[video], data_config, maps_fn, batch_size=batch_size, scale=scale)
        bank_files.write_video(root, video, entries, dtype)
        written.append(video)
        if after_video is not None:
            after_video(video)
    return written


def extract_banks(config: ml_collections.ConfigDict, workdir: str, *, create: ModelFactory = create_model,
                  after_video: Callable[[str], None] | None = None) -> dict:
    """run.py --mode=extract_bank: the latest checkpoint of the source run (inputs.bank_source_workdir), an ACAR
    model (inputs.bank_source_config), over every keyframe of every (split, scale) in inputs.bank_views,
    storing bank.content; resumes where a previous run stopped."""
    workdir = os.path.abspath(workdir)
    checkpoints.quiet_orbax()
    entries_fn = bank_entries_fn(str(config.bank.content))
    source_config = inputs.bank_source_config(config)
    directory = os.path.join(inputs.bank_source_workdir(config, workdir), checkpoints.CHECKPOINT_SUBDIR)
    if checkpoints.latest_step(directory) is None:
        raise FileNotFoundError(f"--mode=extract_bank: no checkpoint in {directory} (bank.source_workdir); train "
                                "the ACAR model first")
    restored = restore_model(source_config, directory, create=create)
    digest = inputs.params_digest(restored.params)
    prepare_data(config)
    ava_files.check_data_files(config.data, ("train", "val"))   # the bank reads frames, whatever data.source
    local = Mesh(np.asarray(jax.local_devices()), (parallel.AXIS,))   # each host runs its own videos
    weights = jax.device_put(restored.weights, NamedSharding(local, P()))
    graphdef, split_sharding = restored.graphdef, NamedSharding(local, P(parallel.AXIS))

    @jax.jit
    def forward(params, batch_stats, rng_state, clip_batch, boxes, valid_hw):
        net = nnx.merge(graphdef, params, batch_stats, rng_state, copy=True)
        return entries_fn(net, clip_batch, boxes, valid_hw)

    def maps_fn(clip_batch, boxes, valid_hw):
        args = [jax.device_put(np.asarray(a), split_sharding) for a in (clip_batch, boxes, valid_hw)]
        maps, eff = forward(*weights, *args)
        return np.asarray(maps), np.asarray(eff)

    batch_size = int(config.bank.batch_size) * jax.local_device_count()
    out = {}
    for split, scale in inputs.bank_views(config):
        root = inputs.bank_directory(config, workdir, split, scale)
        records = bank_records.bank_records(config.data, split, inputs.bank_boxes(config, split))
        fp = inputs.bank_fingerprint(config, source_config, digest, split, scale)
        written = extract_bank(
            records, config.data, maps_fn, root, fingerprint=fp, split=split, dtype=str(config.bank.dtype),
            batch_size=batch_size, scale=scale, process_index=jax.process_index(),
            process_count=jax.process_count(), after_video=after_video)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"bank {root}")
        if jax.process_index() == 0:
            bank_files.mark_complete(root)
        out[f"bank/{os.path.basename(root)}"] = f"{root} ({len(written)} videos written now)"
    return out
