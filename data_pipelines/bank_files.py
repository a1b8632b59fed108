"""The feature bank on disk: one TFRecord file per video plus a manifest, written so that a crash never leaves
anything that reads as complete.

Layout under a bank directory:
  manifest.json              {"format", "fingerprint", "split", "dtype", "videos": [...], "complete"}
  videos/<video_id>.tfrecord one tf.train.Example per (timestamp, actor), in (timestamp, actor) order:
                             video_id, timestamp, actor, box [4] float32, shape [h, w, D], map (raw bytes)
A video file is written to a temporary name and renamed when closed, so a file under its final name is whole;
the manifest is also replaced atomically and says `complete: true` only after every listed video is written.
Re-running an interrupted extraction keeps the finished files and writes the others.
The `fingerprint` names the model and split the bank came from; a reader given another fingerprint refuses it.
"""

from __future__ import annotations

import dataclasses
import json
import os

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


def _write_json_atomic(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
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
    """Writes a video's entries (sorted by timestamp) to a temporary file and renames it into place."""
    storage = _dtype(dtype)
    path = video_path(root, video_id)
    tmp = os.path.join(os.path.dirname(path), f".{video_id}.tfrecord.tmp-{os.getpid()}")
    with tf.io.TFRecordWriter(tmp) as writer:
        for entry in sorted(entries, key=lambda e: e.timestamp):
            maps = np.asarray(entry.maps).astype(storage)
            for actor in range(maps.shape[0]):
                writer.write(_example(video_id, entry.timestamp, actor, entry.boxes[actor], maps[actor]))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
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

    def read_video(self, video_id: str) -> dict[int, Entry]:
        """timestamp -> Entry for every keyframe of `video_id` in the bank."""
        path = video_path(self.root, video_id)
        if video_id not in self.videos:
            raise BankError(f"{os.path.join(self.root, MANIFEST)}: video {video_id!r} is not in the bank "
                            f"(split {self.manifest['split']!r})")
        if not os.path.isfile(path):
            raise BankError(f"{path}: missing file of video {video_id!r}, listed in the bank's manifest")
        by_time: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for ex in tf.data.TFRecordDataset(path).map(parse_example).as_numpy_iterator():
            if ex["video_id"].decode() != video_id:
                raise BankError(f"{path}: holds an entry of video {ex['video_id'].decode()!r}")
            fmap = np.frombuffer(ex["map"], self.dtype).reshape(tuple(ex["shape"]))
            by_time.setdefault(int(ex["timestamp"]), []).append((int(ex["actor"]), ex["box"], fmap))
        out = {}
        for t, rows in sorted(by_time.items()):
            rows.sort(key=lambda r: r[0])
            out[t] = Entry(t, np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows]))
        return out
