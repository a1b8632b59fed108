"""tf.data: keyframe records -> decoded frames -> transforms -> padded, batched examples (acar_jax/core/batch.py).

The chain, top to bottom:
  records -> static plan (frame size, resized size, spatial bucket, N_max bucket per keyframe)
          -> per-epoch batch plan, a pure function of (seed, epoch): shuffle, batch within (spatial, box)
             buckets
          -> this host's slice of every global batch (Python generator of example specs)
          -> tf.data map: read + decode JPEGs (or an mp4), resize short side, flip, normalise, pad; box law
          -> batch -> prefetch -> numpy.
Because the plan is index-based, the iterator's state is just the global step: `iterator(start_step=k)`
yields what an uninterrupted iterator yields from step k on, without decoding the skipped batches.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import functools
import weakref
from collections.abc import Iterator, Sequence

import av
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from data_pipelines import frame_index, packed_clips, transforms
from data_pipelines.records import KeyframeRecord

Size = tuple[int, int]


# ----------------------------------------------------------------------------------------------- buckets

BOX_BUCKET_ROUNDING = 8   # a bucket sized from the data is the largest keyframe's box count rounded up to this


def data_box_buckets(box_counts: Sequence[int], box_buckets: Sequence[int]) -> tuple[int, ...]:
    """The N_max buckets of a dataset: `config.data.box_buckets`, plus, when the most crowded keyframe has more
    boxes than the largest of them, one last bucket sized from the data (its box count rounded up to a multiple
    of BOX_BUCKET_ROUNDING). So every keyframe fits one bucket whole: none is split, truncated or refused."""
    buckets = sorted({int(b) for b in box_buckets})
    if not buckets or buckets[0] < 1:
        raise ValueError(f"config.data.box_buckets must be positive box counts, got {tuple(box_buckets)}")
    largest = max(box_counts, default=0)
    if largest > buckets[-1]:
        buckets.append(_ceil_div(largest, BOX_BUCKET_ROUNDING) * BOX_BUCKET_ROUNDING)
    return tuple(buckets)


_LOGGED_HISTOGRAMS: set[str] = set()


def log_box_bucket_histogram(items: Sequence[KeyframePlan], what: str) -> str:
    """Logs (once per distinct message) how many keyframes fall in each N_max bucket; returns the message."""
    counts = collections.Counter(it.n_max for it in items)
    most = max((it.record.num_boxes for it in items), default=0)
    message = (f"{what}: keyframes per N_max box bucket {dict(sorted(counts.items()))} "
               f"(most crowded keyframe: {most} boxes)")
    if message not in _LOGGED_HISTOGRAMS:
        _LOGGED_HISTOGRAMS.add(message)
        logging.info("%s", message)
    return message


def box_bucket(num_boxes: int, box_buckets: Sequence[int]) -> int:
    """The smallest N_max bucket holding `num_boxes` (buckets from `data_box_buckets` hold every keyframe)."""
    for n_max in sorted(box_buckets):
        if num_boxes <= n_max:
            return int(n_max)
    raise ValueError(f"{num_boxes} boxes exceed the largest N_max bucket {max(box_buckets)} "
                     f"(config.data.box_buckets={tuple(box_buckets)})")


def spatial_buckets(records_or_sizes: Sequence[KeyframeRecord] | Sequence[Size],
                    data_config: ml_collections.ConfigDict, scale: int, *, exact: bool = False
                    ) -> tuple[Size, ...]:
    """Padded (H, W) sizes at short side `scale`, smallest area first (docs/design.md, "Static shapes and buckets").

    `records_or_sizes`: keyframe records (their frame sizes are probed) or original (height, width) sizes.
    `exact`: every distinct resized size is its own bucket, whatever their number and the config says (what
    evaluation uses unless `data.eval_pad_spatial`: nothing is padded, as the reference's one clip per GPU).
    Otherwise `config.data.spatial_buckets` (given at `short_side`) is rescaled to `scale` so that every clip
    that fits a bucket at `short_side` fits it at `scale`; without it buckets come from the index: each exact
    resized size is its own bucket while there are at most `max_spatial_buckets` of them; beyond that, per
    orientation, the clips sorted by long side are cut into equal-count groups, each padded to its largest
    member (aspect-ratio buckets).
    """
    if exact:
        distinct = {transforms.resized_hw(h, w, scale) for h, w in _original_sizes(records_or_sizes)}
        return tuple(sorted(distinct, key=lambda hw: (hw[0] * hw[1], hw)))
    if data_config.spatial_buckets:
        short = int(data_config.short_side)

        def rescale(x: int) -> int:
            # A side equal to the short side stays the short side. A long side L (short side S) fits x at
            # `short` iff int(short * L / S) <= x, i.e. L / S < (x + 1) / short; keep that bound at `scale`.
            return scale if x == short else _ceil_div(scale * (x + 1), short) - 1

        scaled = {(rescale(h), rescale(w)) for h, w in data_config.spatial_buckets}
        return tuple(sorted(scaled, key=lambda hw: (hw[0] * hw[1], hw)))
    sizes = _original_sizes(records_or_sizes)
    resized = [transforms.resized_hw(h, w, scale) for h, w in sizes]
    distinct = sorted(set(resized))
    budget = int(data_config.max_spatial_buckets)
    if len(distinct) <= budget:
        return tuple(sorted(distinct, key=lambda hw: (hw[0] * hw[1], hw)))
    landscape = sorted((hw for hw in resized if hw[0] <= hw[1]), key=lambda hw: (hw[1], hw[0]))
    portrait = sorted((hw for hw in resized if hw[0] > hw[1]), key=lambda hw: (hw[0], hw[1]))
    if not portrait:
        k_land = budget
    elif not landscape:
        k_land = 0
    else:
        k_land = min(budget - 1, max(1, round(budget * len(set(landscape)) / len(distinct))))
    buckets = _quantile_buckets(landscape, k_land) | _quantile_buckets(portrait, budget - k_land)
    return tuple(sorted(buckets, key=lambda hw: (hw[0] * hw[1], hw)))


def assign_spatial_bucket(hw: Size, buckets: Sequence[Size]) -> Size:
    """The smallest-area bucket that holds a resized clip of size `hw`; ValueError if none does."""
    fits = [b for b in buckets if hw[0] <= b[0] and hw[1] <= b[1]]
    if not fits:
        raise ValueError(f"resized clip of size {hw} fits no spatial bucket of {tuple(buckets)}")
    return min(fits, key=lambda b: (b[0] * b[1], b))


def _quantile_buckets(sizes: list[Size], k: int) -> set[Size]:
    if not sizes or k <= 0:
        return set()
    cuts = np.linspace(0, len(sizes), k + 1).round().astype(int)
    out = set()
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi > lo:
            chunk = np.asarray(sizes[lo:hi])
            out.add((int(chunk[:, 0].max()), int(chunk[:, 1].max())))
    return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------ frame sources

def _probe_size(frames_dir: str, video_path: str, keyframe_index: int) -> Size:
    """(height, width) of a video's frames, read from one JPEG header or the mp4 stream (no full decode)."""
    if video_path:
        try:
            with av.open(video_path) as container:
                stream = container.streams.video[0]
                return int(stream.codec_context.height), int(stream.codec_context.width)
        except (OSError, IndexError, av.FFmpegError) as e:
            raise ValueError(f"cannot read the video stream size of {video_path}: {e}") from e
    path = frame_index.frame_paths(frames_dir, [keyframe_index])[0]
    try:
        with Image.open(path) as img:
            width, height = img.size
    except OSError as e:
        raise frame_index.FrameReadError(f"cannot read the JPEG header of frame {path}: {e}") from e
    return int(height), int(width)


def _original_sizes(records_or_sizes: Sequence[KeyframeRecord] | Sequence[Size]) -> list[Size]:
    """Frame (height, width) per item: sizes as given, records probed once per video (frames share a size)."""
    per_video: dict[tuple[str, str], Size] = {}
    sizes = []
    for item in records_or_sizes:
        if not isinstance(item, KeyframeRecord):
            sizes.append((int(item[0]), int(item[1])))
            continue
        src = item.source
        if isinstance(src, packed_clips.PackedSource):     # measured when the shards were prepared
            sizes.append(src.frame_hw)
            continue
        key = (src.frames_dir, src.video_path)
        if key not in per_video:
            per_video[key] = _probe_size(src.frames_dir, src.video_path, src.keyframe_index)
        sizes.append(per_video[key])
    return sizes


def _frame_indices(record: KeyframeRecord, data_config: ml_collections.ConfigDict) -> np.ndarray:
    """AVA: 1-based frame numbers, the reference's looping window; Kinetics: 0-based decoded indices, the
    paper's last 4T frames near the end."""
    src = record.source
    kinetics = bool(src.video_path)
    return np.asarray(frame_index.clip_frame_indices(
        src.keyframe_index, int(data_config.num_frames), int(data_config.frame_stride), src.num_frames,
        policy="last" if kinetics else "loop", first_index=0 if kinetics else 1), np.int64)


def _decode_video_frames(video_path: bytes, indices: np.ndarray) -> np.ndarray:
    """py side of the mp4 branch: decode the whole clip with PyAV, pick `indices` -> [T, H, W, 3] uint8."""
    frames = frame_index.decode_video(video_path.decode())
    return np.ascontiguousarray(frames[indices], dtype=np.uint8)


# -------------------------------------------------------------------------------------------- plan

@dataclasses.dataclass(frozen=True)
class KeyframePlan:
    """The static plan of one keyframe: its resized size, padded size and box bucket."""
    record: KeyframeRecord
    resize_hw: Size
    pad_hw: Size
    n_max: int

    @property
    def bucket(self) -> tuple[Size, int]:
        return self.pad_hw, self.n_max


def _keyframe_name(record: KeyframeRecord) -> str:
    return f"keyframe {record.video_id},{record.timestamp}"


def _plan_items(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, scale: int,
                num_classes: int | None, *, exact_sizes: bool = False) -> list[KeyframePlan]:
    """Assigns every keyframe its buckets (`exact_sizes`: no spatial padding); errors name the keyframe."""
    seen: dict[tuple[str, int], int] = {}
    for i, rec in enumerate(records):
        key = (rec.video_id, int(rec.timestamp))
        if key in seen:
            raise ValueError(f"{_keyframe_name(rec)} appears in records {seen[key]} and {i}; a keyframe "
                             "must be one record holding all its boxes")
        seen[key] = i
        if rec.boxes.ndim != 2 or rec.boxes.shape[1] != 4:
            raise ValueError(f"{_keyframe_name(rec)}: boxes must be [n, 4], got {rec.boxes.shape}")
        if num_classes is not None and rec.labels.shape != (rec.num_boxes, num_classes):
            raise ValueError(f"{_keyframe_name(rec)}: labels must be [n, K] = [{rec.num_boxes}, "
                             f"{num_classes}], got {rec.labels.shape}")
    sizes = _original_sizes(records)
    buckets = spatial_buckets(sizes, data_config, scale, exact=exact_sizes)
    n_max_buckets = data_box_buckets([rec.num_boxes for rec in records], data_config.box_buckets)
    items = []
    for rec, (h, w) in zip(records, sizes, strict=True):
        resize_hw = transforms.resized_hw(h, w, scale)
        try:
            pad_hw = assign_spatial_bucket(resize_hw, buckets)
            n_max = box_bucket(rec.num_boxes, n_max_buckets)
        except ValueError as e:
            raise ValueError(f"{_keyframe_name(rec)} (frames {h}x{w}, {rec.num_boxes} boxes): {e}") from e
        items.append(KeyframePlan(rec, resize_hw, pad_hw, n_max))
    return items


def _host_slice(batch_size: int, process_index: int, process_count: int) -> slice:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} is not divisible by process_count={process_count}")
    per_host = batch_size // process_count
    return slice(process_index * per_host, (process_index + 1) * per_host)


# ------------------------------------------------------------------------------------ tf.data stage

class _ClipLoader:
    """Builds the tf.data map from example specs to padded examples (train or one eval view)."""

    def __init__(self, data_config: ml_collections.ConfigDict, num_classes: int, *, train: bool,
                 flip: bool = False):
        self.config = data_config
        self.num_frames = int(data_config.num_frames)
        self.num_classes = num_classes
        self.train = train
        self.flip = flip

    def spec(self) -> dict[str, tf.TensorSpec]:
        t, k = self.num_frames, self.num_classes
        return {
            "paths": tf.TensorSpec([t], tf.string),
            "video_path": tf.TensorSpec([], tf.string),
            "frame_idx": tf.TensorSpec([t], tf.int64),
            "resize_hw": tf.TensorSpec([2], tf.int32),
            "pad_hw": tf.TensorSpec([2], tf.int32),
            "boxes": tf.TensorSpec([None, 4], tf.float32),
            "box_mask": tf.TensorSpec([None], tf.bool),
            "labels": tf.TensorSpec([None, k], tf.float32),
            "key": tf.TensorSpec([2], tf.int64),
            "filler": tf.TensorSpec([], tf.bool),
            "video_id": tf.TensorSpec([], tf.string),
            "timestamp": tf.TensorSpec([], tf.int32),
            "shard_set": tf.TensorSpec([], tf.string),     # packed clips: frames from record `position` of it
            "position": tf.TensorSpec([], tf.int64),
        }

    def example(self, item: KeyframePlan | None, key: tuple[int, int] = (0, 0), *,
                filler_bucket: tuple[Size, int] | None = None) -> dict[str, np.ndarray]:
        """The host-side spec of one example (a filler clip when `item` is None)."""
        t, k = self.num_frames, self.num_classes
        if item is None:
            (pad_hw, n_max) = filler_bucket
            return {"paths": np.full([t], b""), "video_path": np.bytes_(b""),
                    "frame_idx": np.zeros([t], np.int64),
                    "resize_hw": np.asarray(pad_hw, np.int32), "pad_hw": np.asarray(pad_hw, np.int32),
                    "boxes": np.zeros([n_max, 4], np.float32), "box_mask": np.zeros([n_max], bool),
                    "labels": np.zeros([n_max, k], np.float32), "key": np.zeros([2], np.int64),
                    "filler": np.bool_(True), "video_id": np.bytes_(b""), "timestamp": np.int32(0),
                    "shard_set": np.bytes_(b""), "position": np.int64(-1)}
        rec = item.record
        indices = _frame_indices(rec, self.config)
        n = rec.num_boxes
        boxes = np.zeros([item.n_max, 4], np.float32)
        boxes[:n] = rec.boxes
        labels = np.zeros([item.n_max, k], np.float32)
        labels[:n] = rec.labels
        box_mask = np.arange(item.n_max) < n
        packed = isinstance(rec.source, packed_clips.PackedSource)
        if rec.source.video_path or packed:
            paths = np.full([t], b"")
        else:
            paths = np.asarray([p.encode() for p in frame_index.frame_paths(rec.source.frames_dir, indices)])
        return {"paths": paths, "video_path": np.bytes_(rec.source.video_path.encode()),
                "frame_idx": indices, "resize_hw": np.asarray(item.resize_hw, np.int32),
                "pad_hw": np.asarray(item.pad_hw, np.int32), "boxes": boxes, "box_mask": box_mask, "labels": labels,
                "key": np.asarray(key, np.int64), "filler": np.bool_(False),
                "video_id": np.bytes_(rec.video_id.encode()), "timestamp": np.int32(rec.timestamp),
                "shard_set": np.bytes_(rec.source.shard_set.encode() if packed else b""),
                "position": np.int64(rec.source.position if packed else -1)}

    def _decode(self, ex: dict[str, tf.Tensor]) -> tf.Tensor:
        """[T, H, W, 3] uint8: JPEGs (frame files or a packed record) decoded by TF (outside the GIL), or an mp4
        decoded by PyAV.

        INTEGER_ACCURATE is libjpeg's ISLOW, what PIL (the reference's reader) uses: the decoded pixels are
        the reference's exactly (TF's default, INTEGER_FAST, is off by up to 4 levels).
        """
        def decode(data):
            return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

        def packed_bytes():
            data = tf.numpy_function(packed_clips.read_jpegs, [ex["shard_set"], ex["position"], ex["video_id"],
                                                               ex["timestamp"]], tf.string, stateful=False)
            return tf.ensure_shape(data, [self.num_frames])

        def jpegs():
            spec = tf.TensorSpec([None, None, 3], tf.uint8)
            data = tf.cond(tf.strings.length(ex["shard_set"]) > 0, packed_bytes,
                           lambda: tf.map_fn(tf.io.read_file, ex["paths"]))
            return tf.map_fn(decode, data, fn_output_signature=spec)

        def video():
            frames = tf.numpy_function(_decode_video_frames, [ex["video_path"], ex["frame_idx"]], tf.uint8,
                                       stateful=False)
            return tf.ensure_shape(frames, [self.num_frames, None, None, 3])

        return tf.cond(tf.strings.length(ex["video_path"]) > 0, video, jpegs)

    def __call__(self, ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        cfg = self.config
        if self.train:
            boxes, keep, flip = transforms.augment_boxes(ex["boxes"], ex["key"], hflip=bool(cfg.hflip),
                                                         jitter=float(cfg.box_jitter))
        else:
            boxes, keep = transforms.clamp_boxes(ex["boxes"])
            flip = tf.constant(self.flip)
            if self.flip:
                boxes = transforms.flip_boxes(boxes)
        box_mask = tf.logical_and(keep, ex["box_mask"])
        boxes = tf.where(box_mask[:, None], boxes, 0.0)
        labels = tf.where(box_mask[:, None], ex["labels"], 0.0)

        def real_clip():
            clip = transforms.resize_clip(self._decode(ex), ex["resize_hw"])  # uint8: a cheap flip
            clip = tf.cond(flip, lambda: transforms.flip_clip(clip), lambda: clip)
            clip = transforms.normalize_clip(clip, float(cfg.pixel_scale), tuple(cfg.mean), tuple(cfg.std))
            return transforms.pad_clip(clip, ex["pad_hw"])

        def filler_clip():
            return tf.zeros(tf.concat([[self.num_frames], ex["pad_hw"], [3]], 0), tf.float32)

        clips = tf.cond(ex["filler"], filler_clip, real_clip)
        out = {"clips": tf.ensure_shape(clips, [self.num_frames, None, None, 3]), "boxes": boxes,
               "box_mask": box_mask, "valid_hw": ex["resize_hw"], "labels": labels,
               # host-side metadata of train and eval batches: a bank window is looked up from these
               "video_id": ex["video_id"], "timestamp": ex["timestamp"], "clip_mask": tf.logical_not(ex["filler"]),
               "flip": tf.logical_and(flip, tf.logical_not(ex["filler"]))}
        if not self.train:
            out.update(orig_boxes=tf.where(ex["box_mask"][:, None], ex["boxes"], 0.0))
        return out

    def dataset(self, examples, batch_size: int) -> tf.data.Dataset:
        """examples: a zero-argument callable returning an iterator of example specs, in batch order."""
        ds = tf.data.Dataset.from_generator(examples, output_signature=self.spec())
        ds = ds.map(self, num_parallel_calls=int(self.config.num_parallel_calls), deterministic=True)
        ds = ds.batch(batch_size)
        options = tf.data.Options()
        options.deterministic = True
        return ds.with_options(options).prefetch(int(self.config.prefetch))


def _diagnose(items: Sequence[KeyframePlan], data_config: ml_collections.ConfigDict, error: Exception) -> Exception:
    """Turns a tf error of a batch into one naming the frame file or video at fault (re-read in order)."""
    for item in items:
        src = item.record.source
        where = _keyframe_name(item.record)
        try:
            if isinstance(src, packed_clips.PackedSource):
                packed_clips.check_clip(src, item.record)
                continue
            if src.video_path:
                frame_index.decode_video(src.video_path)
                continue
            for path in frame_index.frame_paths(src.frames_dir, _frame_indices(item.record, data_config)):
                frame_index.read_frame(path)
        except (FileNotFoundError, frame_index.FrameReadError) as e:
            return type(e)(f"{e} ({where})")
    names = ", ".join(_keyframe_name(it.record) for it in items)
    return RuntimeError(f"input pipeline failed on a batch of [{names}]: {error}")


def _to_host(batch: dict) -> dict[str, np.ndarray]:
    if "video_id" in batch:
        batch["video_id"] = np.asarray([v.decode() for v in batch["video_id"]], dtype=object)
    return batch


# ---------------------------------------------------------------------------------------------- train

class TrainInput:
    """Training input: endless, shuffled, bucketed host-local batches whose state is the global step.

    Every host builds the same plan from all records and yields its `global_batch_size // process_count`
    slice of every global batch, so all hosts agree on each step's (spatial, box) bucket and shapes.
    Epoch e's order is `default_rng((seed, e)).permutation`; batches are emitted per bucket as they fill in
    that order; a bucket's remainder is dropped, so `steps_per_epoch = sum_b floor(n_b / global_batch_size)`
    is the same for every epoch. Flip and jitter of record r in epoch e come from the stateless key
    (seed, e * 2**32 + r).
    """

    def __init__(self, records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, *,
                 global_batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                 num_classes: int):
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
        self._slice = _host_slice(global_batch_size, process_index, process_count)
        self.global_batch_size = int(global_batch_size)
        self.host_batch_size = global_batch_size // process_count
        self.seed = int(seed)
        self.config = data_config
        self.items = _plan_items(list(records), data_config, int(data_config.short_side), num_classes)
        log_box_bucket_histogram(self.items, "train")
        self._groups: dict[tuple[Size, int], int] = collections.Counter(it.bucket for it in self.items)
        self.steps_per_epoch = sum(n // global_batch_size for n in self._groups.values())
        if self.steps_per_epoch == 0:
            raise ValueError(f"no (spatial, box) bucket holds a full global batch of {global_batch_size}: "
                             f"bucket sizes {dict(self._groups)} from {len(self.items)} keyframes")
        self._loader = _ClipLoader(data_config, num_classes, train=True)

    @property
    def buckets(self) -> tuple[tuple[Size, int], ...]:
        """The ((H, W), N_max) shapes this input can yield (the programs a train step compiles)."""
        return tuple(sorted(b for b, n in self._groups.items() if n >= self.global_batch_size))

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one instance per run; the cache is the current epoch's plan)
    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, ...]:
        """Epoch `epoch`'s global batches: `steps_per_epoch` arrays of record indices, from (seed, epoch)."""
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.items))
        pending: dict[tuple[Size, int], list[int]] = collections.defaultdict(list)
        batches = []
        for r in order:
            bucket = pending[self.items[r].bucket]
            bucket.append(int(r))
            if len(bucket) == self.global_batch_size:
                batches.append(np.asarray(bucket))
                bucket.clear()
        return tuple(batches)

    def step_records(self, step: int) -> tuple[int, np.ndarray]:
        """(epoch, this host's record indices) of global step `step`."""
        epoch, i = divmod(step, self.steps_per_epoch)
        return epoch, self.epoch_plan(epoch)[i][self._slice]

    def _examples(self, start_step: int):
        step = start_step
        while True:
            epoch, indices = self.step_records(step)
            for r in indices:
                yield self._loader.example(self.items[r], (self.seed, (epoch << 32) + int(r)))
            step += 1

    def iterator(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Host-local batches from global step `start_step` on (the keys of acar_jax.core.batch.TRAIN_KEYS)."""
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        ds = self._loader.dataset(lambda: self._examples(start_step), self.host_batch_size)
        items_of = lambda s: [self.items[r] for r in self.step_records(s)[1]]
        yield from _checked(ds, items_of, self.config, start_step)


class _TfBatches:
    """Owns a tf iterator over `ds` and yields numpy batches; `close()` frees it.

    A tf iterator over a Python generator must be freed while the interpreter is still up (else TF logs a
    FAILED_PRECONDITION error when it finalizes the GeneratorDataset at exit): an atexit hook closes live ones.
    """
    live: weakref.WeakSet = weakref.WeakSet()

    def __init__(self, ds: tf.data.Dataset):
        self._it = iter(ds)
        _TfBatches.live.add(self)

    def next(self) -> dict:
        if self._it is None:
            raise StopIteration
        return tf.nest.map_structure(lambda x: x.numpy(), next(self._it))

    def close(self) -> None:
        self._it = None


@atexit.register
def _close_live_iterators() -> None:
    for batches in list(_TfBatches.live):
        batches.close()


def _checked(ds: tf.data.Dataset, items_of_step, data_config, start_step: int) -> Iterator[dict]:
    """Iterates `ds` as numpy, re-raising a tf error of batch s as one naming the file at fault."""
    batches = _TfBatches(ds)
    step = start_step
    while True:
        try:
            batch = batches.next()
        except StopIteration:
            return
        except tf.errors.OpError as e:
            raise _diagnose(items_of_step(step), data_config, e) from e
        yield _to_host(batch)
        step += 1


# ----------------------------------------------------------------------------------------------- eval

class EvalBatches:
    """Iterator over one eval view's batches (fixed size, filler clips with clip_mask False); len(): count."""

    def __init__(self, plan: list[list[KeyframePlan | None]], fillers: list[tuple[Size, int]], loader: _ClipLoader,
                 host_slice: slice, data_config: ml_collections.ConfigDict):
        self._plan = plan
        self.buckets: tuple[tuple[Size, int], ...] = tuple(sorted(set(fillers)))   # the shapes a model compiles
        host_plan = [batch[host_slice] for batch in plan]

        def examples():
            for batch, bucket in zip(host_plan, fillers, strict=True):
                for item in batch:
                    yield loader.example(item, filler_bucket=bucket)

        per_host = host_slice.stop - host_slice.start
        items_of = lambda s: [it for it in host_plan[s] if it is not None]
        self._it = iter(())
        if plan:
            self._it = _checked(loader.dataset(examples, per_host), items_of, data_config, 0)

    def __len__(self) -> int:
        return len(self._plan)

    def __iter__(self) -> EvalBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._it)


def eval_batches(records: Sequence[KeyframeRecord], data_config: ml_collections.ConfigDict, *,
                 batch_size: int, scale: int, flip: bool, process_index: int = 0,
                 process_count: int = 1) -> EvalBatches:
    """One test view (short side `scale`, optionally flipped) of every keyframe, once, in a fixed order.

    `batch_size` is global: keyframes are grouped per (spatial, box) bucket (in record order within a bucket,
    buckets smallest first), each bucket's last batch is filled with filler clips, and each host yields its
    slice of every global batch. Spatial buckets are the exact resized sizes (no clip is padded, so every
    clip's logits are the reference's unpadded ones) unless `data.eval_pad_spatial` asks for the training
    buckets. Boxes are clamped to the image (a box with nothing left gets box_mask False, as the reference
    drops it) and flipped to the view; `orig_boxes` keep the CSV's boxes.
    """
    host_slice = _host_slice(batch_size, process_index, process_count)
    records = list(records)
    num_classes = int(records[0].labels.shape[1]) if records else 0
    items = _plan_items(records, data_config, int(scale), num_classes,
                        exact_sizes=not bool(data_config.eval_pad_spatial))
    log_box_bucket_histogram(items, "eval")
    groups: dict[tuple[Size, int], list[KeyframePlan]] = collections.defaultdict(list)
    for item in items:
        groups[item.bucket].append(item)
    plan: list[list[KeyframePlan | None]] = []
    fillers: list[tuple[Size, int]] = []
    for bucket in sorted(groups, key=lambda b: (b[0][0] * b[0][1], b)):
        members = groups[bucket]
        for lo in range(0, len(members), batch_size):
            batch: list[KeyframePlan | None] = list(members[lo:lo + batch_size])
            plan.append(batch + [None] * (batch_size - len(batch)))
            fillers.append(bucket)
    loader = _ClipLoader(data_config, num_classes, train=False, flip=flip)
    return EvalBatches(plan, fillers, loader, host_slice, data_config)
