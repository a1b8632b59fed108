"""The feature bank on disk: one TFRecord file per video plus a manifest, written so that a crash never leaves
anything that reads as complete.

Layout under a bank directory:
  manifest.json              {"format", "fingerprint", "split", "dtype", "videos": [...], "complete"}
  videos/<video_id>.tfrecord one tf.train.Example per (timestamp, actor), in (timestamp, actor) order:
                             video_id, timestamp, actor, box [4] float32, shape [h, w, D], map (raw bytes)
  videos/<video_id>.index.json  [[timestamp, actor, byte offset, record length], ...] of that file, so that a
                             window reads only its own seconds (an AVA video's R50 maps are ~1 GB; a window's
                             21 seconds ~25 MB). Banks written without it are read whole (slower, same values).
A video file is written to a temporary name and renamed when closed (its index first), so a file under its final
name is whole;
the manifest is also replaced atomically and says `complete: true` only after every listed video is written.
Re-running an interrupted extraction keeps the finished files and writes the others.
The `fingerprint` names the model and split the bank came from; a reader given another fingerprint refuses it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

FORMAT = 1
MANIFEST = "manifest.json"
STORAGE_DTYPES = ("float16", "bfloat16", "float32")


class BankError(ValueError):
    """A bank that cannot serve the request; the message names the file and the key."""


def _dtype(name: str) -> np.dtype:
    if name not in STORAGE_DTYPES:
        raise BankError(f"bank dtype: expected one of {STORAGE_DTYPES}, got {name!r}")
    if name == "bfloat16":
        import ml_dtypes  # noqa: PLC0415 (only for bfloat16 banks)
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def video_path(root: str, video_id: str) -> str:
    return os.path.join(root, "videos", f"{video_id}.tfrecord")


def index_path(root: str, video_id: str) -> str:
    return os.path.join(root, "videos", f"{video_id}.index.json")


_RECORD_OVERHEAD = 16      # TFRecord framing: uint64 length, uint32 CRC of it, the data, uint32 CRC of the data


def _write_json_atomic(path: str, payload: dict, *, compact: bool = False) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, sort_keys=True, **({"separators": (",", ":")} if compact else {"indent": 1}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        raise BankError(f"{path}: no bank manifest (extract the bank first: run.py --mode=extract_bank)")
    with open(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise BankError(f"{path}: not a bank manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        raise BankError(f"{path}: format {manifest.get('format')!r}, this reader reads format {FORMAT}")
    return manifest


def start_bank(root: str, *, fingerprint: str, split: str, dtype: str, videos: list[str]) -> dict:
    """Creates (or re-opens, for a resumed run) the bank at `root`. A manifest of another fingerprint, split,
    dtype or video list is an error, never overwritten."""
    _dtype(dtype)
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    want = {"format": FORMAT, "fingerprint": fingerprint, "split": split, "dtype": dtype,
            "videos": sorted(videos), "complete": False}
    path = os.path.join(root, MANIFEST)
    if os.path.isfile(path):
        have = read_manifest(root)
        for key in ("fingerprint", "split", "dtype", "videos"):
            if have.get(key) != want[key]:
                shown = have.get(key) if key != "videos" else f"{len(have.get(key) or [])} videos"
                raise BankError(f"{path}: key {key!r} is {shown!r}, this extraction's differs; use another "
                                f"bank directory or delete this one")
        return have
    _write_json_atomic(path, want)
    return want


def finished_videos(root: str) -> set[str]:
    """Videos whose file is whole (final name); temporary files of an interrupted run are not counted."""
    folder = os.path.join(root, "videos")
    if not os.path.isdir(folder):
        return set()
    return {name[:-len(".tfrecord")] for name in os.listdir(folder) if name.endswith(".tfrecord")}


def mark_complete(root: str) -> None:
    """Sets `complete: true` once every video of the manifest has its file."""
    manifest = read_manifest(root)
    missing = sorted(set(manifest["videos"]) - finished_videos(root))
    if missing:
        raise BankError(f"{os.path.join(root, MANIFEST)}: {len(missing)} videos not written yet, e.g. "
                        f"{missing[0]!r}; re-run the extraction to finish them")
    _write_json_atomic(os.path.join(root, MANIFEST), dict(manifest, complete=True))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One keyframe of a video in the bank: every actor's map on the keyframe's first-order grid."""
    timestamp: int
    boxes: np.ndarray   # [n, 4] float32 (the boxes the maps were computed for)
    maps: np.ndarray    # [n, h, w, D] in the bank's storage dtype


def _example(video_id: str, timestamp: int, actor: int, box: np.ndarray, fmap: np.ndarray) -> bytes:
    feature = {
        "video_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode()])),
        "timestamp": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(timestamp)])),
        "actor": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(actor)])),
        "box": tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(box, np.float32).tolist())),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(fmap.shape))),
        "map": tf.train.Feature(bytes_list=tf.train.BytesList(value=[fmap.tobytes()])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)   # map order fixed: identical bytes in every run


def write_video(root: str, video_id: str, entries: list[Entry], dtype: str) -> str:
    """Writes a video's entries (sorted by timestamp) to a temporary file, then its record index, then renames
    the file into place."""
    storage = _dtype(dtype)
    path = video_path(root, video_id)
    tmp = os.path.join(os.path.dirname(path), f".{video_id}.tfrecord.tmp-{os.getpid()}")
    index, offset = [], 0
    with tf.io.TFRecordWriter(tmp) as writer:
        for entry in sorted(entries, key=lambda e: e.timestamp):
            maps = np.asarray(entry.maps).astype(storage)
            for actor in range(maps.shape[0]):
                record = _example(video_id, entry.timestamp, actor, entry.boxes[actor], maps[actor])
                writer.write(record)
                index.append([int(entry.timestamp), actor, offset, len(record)])
                offset += len(record) + _RECORD_OVERHEAD
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if os.path.getsize(tmp) != offset:
        raise BankError(f"{tmp}: {os.path.getsize(tmp)} bytes written, the index expects {offset} (TFRecord "
                        f"framing changed?)")
    _write_json_atomic(index_path(root, video_id), {"video_id": video_id, "records": index}, compact=True)
    os.replace(tmp, path)
    return path


_FEATURES = {
    "video_id": tf.io.FixedLenFeature([], tf.string),
    "timestamp": tf.io.FixedLenFeature([], tf.int64),
    "actor": tf.io.FixedLenFeature([], tf.int64),
    "box": tf.io.FixedLenFeature([4], tf.float32),
    "shape": tf.io.FixedLenFeature([3], tf.int64),
    "map": tf.io.FixedLenFeature([], tf.string),
}


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """tf.data map function: one serialized entry -> its features (`map` still raw bytes)."""
    return tf.io.parse_single_example(serialized, _FEATURES)


class BankReader:
    """A finished bank, checked against the fingerprint of the model and split that will use it."""

    def __init__(self, root: str, *, fingerprint: str | None = None, split: str | None = None):
        self.root = root
        self.manifest = read_manifest(root)
        path = os.path.join(root, MANIFEST)
        if not self.manifest.get("complete"):
            raise BankError(f"{path}: the bank is not complete (an extraction was interrupted); re-run "
                            f"run.py --mode=extract_bank to finish it")
        if fingerprint is not None and self.manifest["fingerprint"] != fingerprint:
            raise BankError(f"{path}: key 'fingerprint' is {self.manifest['fingerprint']!r}, expected "
                            f"{fingerprint!r}: this bank comes from another model or split")
        if split is not None and self.manifest["split"] != split:
            raise BankError(f"{path}: key 'split' is {self.manifest['split']!r}, expected {split!r}: this bank "
                            f"belongs to another split")
        self.dtype = _dtype(self.manifest["dtype"])
        self.videos = frozenset(self.manifest["videos"])
        self._indexes: dict[str, list[tuple[int, int, int, int]] | None] = {}

    def _check_video(self, video_id: str) -> str:
        path = video_path(self.root, video_id)
        if video_id not in self.videos:
            raise BankError(f"{os.path.join(self.root, MANIFEST)}: video {video_id!r} is not in the bank "
                            f"(split {self.manifest['split']!r})")
        if not os.path.isfile(path):
            raise BankError(f"{path}: missing file of video {video_id!r}, listed in the bank's manifest")
        return path

    def read_video(self, video_id: str) -> dict[int, Entry]:
        """timestamp -> Entry for every keyframe of `video_id` in the bank (the whole file, through tf.data)."""
        path = self._check_video(video_id)
        rows = []
        for ex in tf.data.TFRecordDataset(path).map(parse_example).as_numpy_iterator():
            if ex["video_id"].decode() != video_id:
                raise BankError(f"{path}: holds an entry of video {ex['video_id'].decode()!r}")
            fmap = np.frombuffer(ex["map"], self.dtype).reshape(tuple(ex["shape"]))
            rows.append((int(ex["timestamp"]), int(ex["actor"]), ex["box"], fmap))
        return _entries(rows)

    def index(self, video_id: str) -> list[tuple[int, int, int, int]] | None:
        """(timestamp, actor, offset, length) of every record of the video's file, or None for a bank written
        without an index. Read once per video."""
        if video_id in self._indexes:
            return self._indexes[video_id]
        self._check_video(video_id)
        path = index_path(self.root, video_id)
        if not os.path.isfile(path):
            self._indexes[video_id] = None
            return None
        try:
            with open(path) as f:
                payload = json.load(f)
            records = [tuple(int(v) for v in row) for row in payload["records"]]
            if payload["video_id"] != video_id or any(len(r) != 4 for r in records):
                raise ValueError("not this video's [timestamp, actor, offset, length] rows")
        except (ValueError, KeyError, TypeError) as e:
            raise BankError(f"{path}: not a bank index of video {video_id!r} ({e}); extract the video again") \
                from None
        self._indexes[video_id] = records
        return records

    def read_seconds(self, video_id: str, seconds: Iterable[int]) -> dict[int, Entry]:
        """timestamp -> Entry for the given seconds of the video that are in the bank, reading only their
        records (through the index; a bank without one is read whole)."""
        path = self._check_video(video_id)
        wanted = {int(t) for t in seconds}
        records = self.index(video_id)
        if records is None:
            return {t: e for t, e in self.read_video(video_id).items() if t in wanted}
        rows = []
        with tf.io.gfile.GFile(path, "rb") as f:
            for timestamp, actor, offset, length in records:
                if timestamp not in wanted:
                    continue
                f.seek(offset)
                header = f.read(12)
                data = f.read(length)
                if len(header) != 12 or struct.unpack("<Q", header[:8])[0] != length or len(data) != length:
                    raise BankError(f"{path}: no record of {length} bytes at offset {offset} as "
                                    f"{index_path(self.root, video_id)} says; extract the video again")
                feature = tf.train.Example.FromString(data).features.feature
                got = (feature["video_id"].bytes_list.value[0].decode(), feature["timestamp"].int64_list.value[0],
                       feature["actor"].int64_list.value[0])
                if got != (video_id, timestamp, actor):
                    raise BankError(f"{path}: the record at offset {offset} is entry {got}, the index says "
                                    f"{(video_id, timestamp, actor)}; extract the video again")
                fmap = np.frombuffer(feature["map"].bytes_list.value[0], self.dtype)
                rows.append((timestamp, actor, np.asarray(feature["box"].float_list.value, np.float32),
                             fmap.reshape(tuple(feature["shape"].int64_list.value))))
        return _entries(rows)


def _entries(rows: list[tuple[int, int, np.ndarray, np.ndarray]]) -> dict[int, Entry]:
    """(timestamp, actor, box, map) rows -> timestamp -> Entry, actors in order."""
    by_time: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for timestamp, actor, box, fmap in rows:
        by_time.setdefault(timestamp, []).append((actor, box, fmap))
    out = {}
    for t, group in sorted(by_time.items()):
        group.sort(key=lambda r: r[0])
        out[t] = Entry(t, np.stack([r[1] for r in group]), np.stack([r[2] for r in group]))
    return out
