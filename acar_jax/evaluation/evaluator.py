"""Inference over the val split: every test view of every keyframe, logits fused per box, the official result
CSV, its frame-mAP and the per-class report.

The path, top to bottom:
  keyframe records (data_pipelines.ava_files; GT boxes or detections above the threshold, exclusions dropped)
  -> one eval_batches stream per test view: short side in `data.eval_scales` x (no flip[, flip])
  -> logits_fn per batch -> per view, each surviving box's logits and a survival flag
  -> fusion (views.py): mean of the logits over the views in which the box survives, then the
     prediction function (acar_jax.models.predictions), as the reference's eval branch does
  -> result CSV `video_id,timestamp,x1,y1,x2,y2,action_id,score` (result_csv.py), original boxes,
     one row per (box, class of the label map)
  -> frame-mAP of that CSV (ava_metric.py, what `python -m acar_jax.evaluation.ava_metric` prints for it)
  -> per-class table, bar chart, group mAPs, TensorBoard (report.py).

Box identity: a box is (record r, its row j in the record). Records are loaded in a fixed order, so a box has
the same global index `offset[r] + j` in every view and on every process.

Multi-host (what we chose and why): every process loads the same records and runs its slice of every global
batch of every view (eval_batches gives all processes the same number of batches, so a sharded `logits_fn`
is called collectively). After each view, each process holds dense `[M, K]` logits and `[M]` survival flags
with zeros for the boxes it did not see; `process_allgather` and a sum over processes merge them (a box of one
view is seen by exactly one process). No shared filesystem is needed, and the fusion then runs on the merged
`[V, M, K]` arrays exactly as on one process. Process 0 writes the CSV, scores it and writes the report; the
metrics are broadcast to every process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from acar_jax.evaluation import ava_metric, report, result_csv, views
from acar_jax.models.predictions import predict_scores
from data_pipelines import ava_files, clips, sources, synthetic
from data_pipelines.records import KeyframeRecord

LogitsFn = Callable[..., np.ndarray]   # (clips, boxes, box_mask, valid_hw[, bank=, bank_mask=]) -> logits
# (batch, view) -> the extra logits_fn inputs of a feature-bank head ({"bank", "bank_mask"} of that view's bank)
BankInputsFn = Callable[[dict, views.View], dict[str, np.ndarray]]


class BoxIndex:
    """Global box ids of a split: box j of record r is `offsets[r] + j`; `lookup` maps batch boxes to them."""

    def __init__(self, records: Sequence[KeyframeRecord]):
        self.records = list(records)
        sizes = np.asarray([r.num_boxes for r in self.records], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.num_boxes = int(self.offsets[-1])
        self._row = {(r.video_id, int(r.timestamp)): i for i, r in enumerate(self.records)}

    def lookup(self, batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clip, slot, global id) of every box that survives in this batch (box_mask, real clips only)."""
        keep = np.asarray(batch["box_mask"], bool) & np.asarray(batch["clip_mask"], bool)[:, None]
        clip, slot = np.nonzero(keep)
        ids = np.empty(clip.shape[0], np.int64)
        for i, (c, j) in enumerate(zip(clip.tolist(), slot.tolist(), strict=True)):
            key = (str(batch["video_id"][c]), int(batch["timestamp"][c]))
            r = self._row.get(key)
            if r is None or j >= self.records[r].num_boxes:
                raise ValueError(f"eval batch box {j} of keyframe {key} is not in the val records "
                                 f"(the input pipeline and the records disagree)")
            ids[i] = self.offsets[r] + j
        return clip, slot, ids

    def metadata(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """video id [M], timestamp [M], original boxes [M, 4] (float32 as read from the CSV) of every box."""
        video_id = [r.video_id for r in self.records for _ in range(r.num_boxes)]
        timestamp = np.repeat([int(r.timestamp) for r in self.records], [r.num_boxes for r in self.records])
        boxes = np.concatenate([r.boxes for r in self.records]).reshape(-1, 4) if self.records else \
            np.zeros([0, 4], np.float32)
        return video_id, timestamp, boxes


def run_views(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, logits_fn: LogitsFn,
              *, batch_size: int, num_classes: int, process_index: int = 0, process_count: int = 1,
              merge: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
              bank_inputs: BankInputsFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-view logits `[V, M, K]` float32 and survival `[V, M]` bool of every box (zero / False for boxes
    this process did not see in that view). `merge(logits, survives)` combines one view's arrays across
    processes (Evaluator.evaluate passes the multi-host sum); None keeps this process's own. `bank_inputs` adds
    each batch's bank window (a feature-bank head; one bank per test scale) to the logits_fn call."""
    index = BoxIndex(records)
    test_views = views.multiview_test_plan(data_config.eval_scales, bool(data_config.eval_flip))
    all_logits = np.zeros([len(test_views), index.num_boxes, num_classes], np.float32)
    all_survives = np.zeros([len(test_views), index.num_boxes], bool)
    for v, view in enumerate(test_views):
        batches = clips.eval_batches(records, data_config, batch_size=batch_size, scale=view.short_side,
                                     flip=view.flip, process_index=process_index, process_count=process_count)
        logging.info("eval view %d/%d (short side %d, flip %s): %d batches in %d shapes %s", v + 1,
                     len(test_views), view.short_side, view.flip, len(batches), len(batches.buckets),
                     ", ".join(f"{h}x{w}/{n}" for (h, w), n in batches.buckets))
        logits_v, survives_v = all_logits[v], all_survives[v]
        for batch in batches:
            extra = bank_inputs(batch, view) if bank_inputs is not None else {}
            logits = np.asarray(logits_fn(batch["clips"], batch["boxes"], batch["box_mask"],
                                          batch["valid_hw"], **extra), np.float32)
            expected = tuple(batch["box_mask"].shape) + (num_classes,)
            if logits.shape != expected:
                raise ValueError(f"logits_fn returned shape {logits.shape}, expected [B, N, K] = {expected}")
            clip, slot, ids = index.lookup(batch)
            logits_v[ids] = logits[clip, slot]
            survives_v[ids] = True
        if merge is not None:
            all_logits[v], all_survives[v] = merge(logits_v, survives_v)
    return all_logits, all_survives


def _merge_processes(logits: np.ndarray, survives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One view's arrays summed over processes: each box of a view lives on exactly one process."""
    if jax.process_count() == 1:
        return logits, survives
    logits = np.asarray(multihost_utils.process_allgather(logits)).sum(axis=0, dtype=np.float32)
    counts = np.asarray(multihost_utils.process_allgather(survives.astype(np.int32))).sum(axis=0)
    if (counts > 1).any():
        raise RuntimeError(f"{int((counts > 1).sum())} boxes were evaluated by more than one process in "
                           "one view (the processes' eval plans disagree)")
    return logits, counts > 0


def _broadcast_floats(values: np.ndarray) -> np.ndarray:
    """Process 0's float64 values on every process (sent as uint32 pairs: device arrays default to 32 bit)."""
    if jax.process_count() == 1:
        return values
    words = multihost_utils.broadcast_one_to_all(np.ascontiguousarray(values, np.float64).view(np.uint32))
    return np.asarray(words, np.uint32).view(np.float64)


def _exact_float32_text(x: np.ndarray) -> np.ndarray:
    """float64 values whose shortest repr is the float32's (0.077f -> 0.077): the CSV shows what was read."""
    return np.asarray(np.asarray(x, np.float32).astype(str), np.float64)


def groundtruth_rows(data_config: ml_collections.ConfigDict) -> result_csv.AvaRows:
    """The val GT as the official evaluator reads it; AVA-Kinetics scores AVA and Kinetics keyframes
    together (one GT, as the challenge's evaluation)."""
    paths = [ava_files.resolve_path(data_config.root, data_config.val_csv)]
    if data_config.dataset == "ava_kinetics":
        paths.append(ava_files.resolve_path(data_config.root, data_config.kinetics_val_csv))
    parts = [result_csv.read_evaluator_csv(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    return result_csv.rows_from_arrays(
        np.concatenate([p.video_id for p in parts]), np.concatenate([p.timestamp for p in parts]),
        np.concatenate([p.boxes for p in parts]), np.concatenate([p.action_id for p in parts]),
        np.concatenate([p.score for p in parts]), path=" + ".join(paths))


def csv_decimals(value) -> int | None:
    """`config.eval_csv_decimals` as write_result_csv takes it: an int >= 0, or None (None / -1: full
    precision, each value's shortest repr)."""
    if value is None or int(value) == -1:
        return None
    if int(value) < 0:
        raise ValueError(f"config.eval_csv_decimals must be >= 0, or None / -1 for full precision, got {value}")
    return int(value)


def write_results(path: str, index: BoxIndex, scores: np.ndarray, seen: np.ndarray,
                  class_ids: Sequence[int], decimals: int | None = None) -> int:
    """Writes a row per (seen box, class): boxes in record order, classes in label-map order; returns rows.

    decimals=None: full precision (boxes as read, float32 scores' shortest repr). decimals=3 is the reference's
    `%.3f` of its pkl boxes and of its float32 scores (`'%.3f' % tensor` formats the exact float32 value), so
    the evaluator's top-50 cut and its ties see the reference's numbers.
    """
    video_id, timestamp, boxes = index.metadata()
    boxes_kept = np.flatnonzero(seen)
    k = len(class_ids)
    rows = np.repeat(boxes_kept, k)
    flat_scores = scores[boxes_kept].reshape(-1)
    flat_scores = _exact_float32_text(flat_scores) if decimals is None else \
        np.asarray(flat_scores, np.float32).astype(np.float64)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    result_csv.write_result_csv(
        path, [video_id[i] for i in rows.tolist()], timestamp[rows], _exact_float32_text(boxes[rows]),
        np.tile(np.asarray(class_ids, np.int64), boxes_kept.size), flat_scores,
        box_decimals=decimals, score_decimals=decimals)
    return int(rows.size)


def score_records(config: ml_collections.ConfigDict, data_config: ml_collections.ConfigDict,
                  records: Sequence[KeyframeRecord], logits_fn: LogitsFn, *,
                  merge: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                  bank_inputs: BankInputsFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores [M, K] float32 and seen [M] bool of every box of `records` (BoxIndex order): every test view of
    `data_config`, logits fused over views, then the prediction function of config.train. The one scoring
    path of the Evaluator and the video demo."""
    view_logits, survives = run_views(records, data_config, logits_fn, batch_size=int(config.eval_batch_size),
                                      num_classes=int(config.model.num_classes), process_index=jax.process_index(),
                                      process_count=jax.process_count(), merge=merge,
                                      bank_inputs=bank_inputs)
    fused, seen = views.fuse_view_logits(view_logits, survives)
    scores = np.asarray(predict_scores(fused, pose_softmax=bool(config.train.pose_softmax),
                                       num_pose_classes=int(config.train.num_pose_classes)), np.float32)
    return scores, seen


class Evaluator:
    """The val split of a config, read once (label map, keyframe records and their box index, the GT, the class
    groups); `evaluate` then scores any logits function on it.

    Each call runs every test view of the val split through `logits_fn`, writes
    `workdir/eval/results_step<N>.csv` (`config.eval_csv_decimals` decimals: 3 in the paper configs, as the
    reference; -1 for full precision), scores it and writes the report. Each view compiles one program per
    exact resized size (`config.data.eval_pad_spatial`).
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        data = config.data
        self.config, self.workdir = config, workdir
        self.label_map_path = ava_files.resolve_path(data.root, data.label_map)
        self.label_map = ava_files.read_label_map(self.label_map_path)
        num_classes = int(config.model.num_classes)
        if self.label_map.num_classes != num_classes:
            raise ValueError(f"{self.label_map.path}: {self.label_map.num_classes} classes, but "
                             f"config.model.num_classes is {num_classes}")
        self.records = sources.keyframe_records(data, "val")
        if not self.records:
            raise ValueError(f"no val keyframes to evaluate under {data.root} (val_csv / val_proposals empty?)")
        self.index = BoxIndex(self.records)
        self.groups = class_groups(data.dataset, self.label_map)
        self.exclusions = ava_files.resolve_path(data.root, data.exclusions) if data.exclusions else None
        self.decimals = csv_decimals(config.eval_csv_decimals)
        self._groundtruth: result_csv.AvaRows | None = None     # read by process 0 at its first evaluation

    def evaluate(self, logits_fn: LogitsFn, *, step: int, writer=None,
                 bank_inputs: BankInputsFn | None = None) -> dict[str, float | str]:
        """{"mAP", per-group mAPs, "csv": path} of `logits_fn` on the val split, on every process.

        logits_fn(clips [B, T, H, W, 3], boxes [B, N, 4], box_mask [B, N], valid_hw [B, 2]) -> logits [B, N, K]
        for this process's slice of each batch (e.g. api.load_model(...).logits, or a jitted sharded function);
        a feature-bank head's logits_fn also takes bank= and bank_mask=, which `bank_inputs(batch, view)` gives.
        """
        scores, seen = score_records(self.config, self.config.data, self.records, logits_fn, merge=_merge_processes,
                                     bank_inputs=bank_inputs)
        out_dir = os.path.join(self.workdir, "eval")
        csv_path = os.path.join(out_dir, f"results_step{step}.csv")
        names = ["mAP"] + [f"mAP_{g}" for g in self.groups]
        values = np.zeros(len(names), np.float64)
        if jax.process_index() == 0:
            if self._groundtruth is None:
                self._groundtruth = groundtruth_rows(self.config.data)
            num_rows = write_results(csv_path, self.index, scores, seen, self.label_map.ids, self.decimals)
            result = ava_metric.evaluate_frame_map(self.label_map_path, self._groundtruth, csv_path,
                                                   self.exclusions)
            group_values = report.group_map(result, self.groups)
            report.write_report(result, out_dir, name=f"step{step}", groups=self.groups)
            if writer is not None:
                report.log_report(writer, step, result, groups=self.groups)
            values = np.asarray([result.mean_ap] + [group_values[g] for g in self.groups], np.float64)
            logging.info("eval step %d: %d of %d boxes scored, %d rows in %s\n%s", step, int(seen.sum()),
                         self.index.num_boxes, num_rows, csv_path, report.format_table(result, self.groups))
        values = _broadcast_floats(values)
        metrics: dict[str, float | str] = {name: float(v) for name, v in zip(names, values, strict=True)}
        metrics["csv"] = csv_path
        return metrics


def class_groups(dataset: str, label_map: ava_files.LabelMap) -> dict[str, tuple[int, ...]]:
    """Class ids per reported group: AVA's pose / object / person id ranges (report.AVA_GROUPS); the
    synthetic dataset's pose / actor-only / relational classes."""
    if dataset == "synthetic":
        return synthetic.class_groups()
    if dataset == "synthetic_longterm":
        from data_pipelines import synthetic_longterm  # noqa: PLC0415 (the ACFB chain's dataset only)
        return synthetic_longterm.class_groups()
    return {name: tuple(c for c in label_map.ids if c in ids) for name, ids in report.AVA_GROUPS.items()}
