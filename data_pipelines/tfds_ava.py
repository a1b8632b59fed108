"""TFDS front for the keyframe index of AVA, AVA-Kinetics and the synthetic dataset.

The builder reads the official files from `manual_dir` with `ava_files.load_keyframe_records` (the same
strict readers and the same train/val box rules the pipeline uses) and stores one example per keyframe: video
id, timestamp, boxes, multi-hot labels, scores, person ids and the frame source. Frames stay on disk (decoded
in the tf.data map), so the prepared dataset is small; `tfds.load`, versioning, split slicing and
`tfds.split_for_jax_process` work as usual.

  builder = AvaKeyframes(config="ava", data_dir=DATA_DIR)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=AVA_ROOT))
  records = [record_from_example(ex) for ex in tfds.as_numpy(builder.as_dataset(split="val"))]

The frames themselves, packed per keyframe into ArrayRecord shards for a pod, are data_pipelines/packed_clips.py's
(`config.data.source = "tfds"`). Frame sources are stored as absolute paths under `manual_dir` as it was when the
dataset was prepared.
Examples keep the index order (sorted by video id, timestamp): shuffling is the pipeline's job.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import synthetic
from data_pipelines.ava_files import load_keyframe_records
from data_pipelines.records import FrameSource, KeyframeRecord

# The config.data fields that decide the index; a builder config gives every one of them.
_INDEX_FIELDS = ("dataset", "frames_dir", "label_map", "train_csv", "val_csv", "exclusions",
                 "train_proposals", "val_proposals", "train_proposal_threshold", "val_proposal_threshold",
                 "kinetics_videos_dir", "kinetics_train_csv", "kinetics_val_csv", "kinetics_val_proposals",
                 "kinetics_val_proposal_threshold", "fps", "start_second")
_NO_KINETICS = {"kinetics_videos_dir": "", "kinetics_train_csv": "", "kinetics_val_csv": "",
                "kinetics_val_proposals": "", "kinetics_val_proposal_threshold": 0.65}
# Official file names (AVA v2.2 / AVA-Kinetics v1.0 downloads; LFB's detections) for the "ava" configs.
_AVA_FILES = {**_NO_KINETICS,
    "dataset": "ava",
    "frames_dir": "frames",
    "label_map": "ava_action_list_v2.2_for_activitynet_2019.pbtxt",
    "train_csv": "ava_train_v2.2.csv",
    "val_csv": "ava_val_v2.2.csv",
    "exclusions": "ava_val_excluded_timestamps_v2.2.csv",
    "train_proposals": "",
    "val_proposals": "ava_val_predicted_boxes.csv",
    "train_proposal_threshold": 0.9,
    "val_proposal_threshold": 0.85,
    "fps": 30,
    "start_second": 900,
}
_KINETICS_FILES = {
    "dataset": "ava_kinetics",
    "kinetics_videos_dir": "kinetics_clips",
    "kinetics_train_csv": "kinetics_train_v1.0.csv",
    "kinetics_val_csv": "kinetics_val_v1.0.csv",
}
# The files data_pipelines/synthetic.py writes.
_SYNTHETIC_FILES = {**_AVA_FILES, "dataset": "synthetic", "label_map": synthetic.LABEL_MAP_FILE,
                    "train_csv": synthetic.TRAIN_CSV, "val_csv": synthetic.VAL_CSV,
                    "exclusions": synthetic.EXCLUSIONS_CSV, "val_proposals": synthetic.VAL_PROPOSALS_CSV,
                    "fps": synthetic.FPS, "start_second": synthetic.START_SECOND}


@dataclasses.dataclass
class AvaKeyframesConfig(tfds.core.BuilderConfig):
    """Which files make the index: `data` holds every index field of a run's config.data (its `root` is not one:
    the files are read from `manual_dir`); `num_classes`: the label map's size (label shape)."""
    data: dict = dataclasses.field(default_factory=dict)
    num_classes: int = 60


def data_config_for(config: AvaKeyframesConfig, root: str) -> ml_collections.ConfigDict:
    """The config.data that `load_keyframe_records` reads: the builder config's index fields and `root`."""
    unknown = sorted(set(config.data) - set(_INDEX_FIELDS))
    if unknown:
        raise KeyError(f"builder config {config.name!r}: unknown data field(s) {unknown}; "
                       f"the index fields are {list(_INDEX_FIELDS)}")
    missing = [k for k in _INDEX_FIELDS if k not in config.data]
    if missing:
        raise KeyError(f"builder config {config.name!r}: missing data field(s) {missing}")
    return ml_collections.ConfigDict({**config.data, "root": root})


def config_from_data(name: str, data_config: ml_collections.ConfigDict, num_classes: int,
                     description: str = "") -> AvaKeyframesConfig:
    """A builder config carrying the index fields of a run's config.data (use a distinct `name` per variant:
    TFDS keys the prepared files by it)."""
    fields = {k: data_config[k] for k in _INDEX_FIELDS if k in data_config}
    return AvaKeyframesConfig(name=name, data=fields, num_classes=num_classes, description=description)


class AvaKeyframes(tfds.core.GeneratorBasedBuilder):
    """Keyframe index (boxes, labels, frame sources) of AVA v2.2, AVA-Kinetics v1.0 or the synthetic set."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Keyframe index read from the official CSV / pbtxt files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the official files in manual_dir (names as configured, defaults below) with the frames extracted by
    tools/extract_frames.py:
      ava_action_list_v2.2_for_activitynet_2019.pbtxt, ava_train_v2.2.csv, ava_val_v2.2.csv,
      ava_val_excluded_timestamps_v2.2.csv, ava_val_predicted_boxes.csv (detections, LFB format),
      frames/<video_id>/image_%06d.jpg;
    AVA-Kinetics adds kinetics_train_v1.0.csv, kinetics_val_v1.0.csv and
    kinetics_clips/<youtube_id>_<start:06d>_<end:06d>.mp4.
    The synthetic dataset: the folder `python tools/make_synthetic_data.py` writes.
    """
    BUILDER_CONFIGS = [
        AvaKeyframesConfig(name="ava", data=_AVA_FILES, num_classes=60,
                           description="AVA v2.2, 60 classes; val on LFB detections >= 0.85."),
        AvaKeyframesConfig(name="ava_kinetics", data={**_AVA_FILES, **_KINETICS_FILES}, num_classes=60,
                           description="AVA-Kinetics v1.0: AVA v2.2 plus one keyframe per Kinetics clip."),
        AvaKeyframesConfig(name="synthetic", data=_SYNTHETIC_FILES, num_classes=synthetic.NUM_CLASSES,
                           description="The generated AVA-format dataset of data_pipelines/synthetic.py."),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        k = self.builder_config.num_classes
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "video_id": tfds.features.Text(),
                "timestamp": tfds.features.Scalar(np.int32),
                "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),     # normalised x1y1x2y2
                "labels": tfds.features.Tensor(shape=(None, k), dtype=np.float32),    # multi-hot
                "scores": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "person_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                "frames_dir": tfds.features.Text(),
                "video_path": tfds.features.Text(),
                "keyframe_index": tfds.features.Scalar(np.int32),
                "num_frames": tfds.features.Scalar(np.int32),
            }),
            disable_shuffling=True,
            homepage="https://research.google.com/ava/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        data = data_config_for(self.builder_config, os.fspath(dl_manager.manual_dir))
        return {split: self._generate_examples(data, split) for split in ("train", "val")}

    def _generate_examples(self, data: ml_collections.ConfigDict, split: str):
        records = load_keyframe_records(data, split)
        k = self.builder_config.num_classes
        for i, rec in enumerate(records):
            if rec.labels.shape[1] != k:
                raise ValueError(f"builder config {self.builder_config.name!r} expects {k} classes but the "
                                 f"label map {data.label_map} has {rec.labels.shape[1]}")
            yield i, example_from_record(rec)


def example_from_record(rec: KeyframeRecord) -> dict:
    """The TFDS example of a keyframe record."""
    return {"video_id": rec.video_id, "timestamp": rec.timestamp, "boxes": rec.boxes, "labels": rec.labels,
            "scores": rec.scores, "person_ids": rec.person_ids, "frames_dir": rec.source.frames_dir,
            "video_path": rec.source.video_path, "keyframe_index": rec.source.keyframe_index,
            "num_frames": rec.source.num_frames}


def record_from_example(ex: dict) -> KeyframeRecord:
    """A keyframe record from a numpy example of the dataset (`tfds.as_numpy`)."""
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    source = FrameSource(frames_dir=text(ex["frames_dir"]), video_path=text(ex["video_path"]),
                         keyframe_index=int(ex["keyframe_index"]), num_frames=int(ex["num_frames"]))
    return KeyframeRecord(video_id=text(ex["video_id"]), timestamp=int(ex["timestamp"]),
                          boxes=np.asarray(ex["boxes"], np.float32),
                          labels=np.asarray(ex["labels"], np.float32),
                          scores=np.asarray(ex["scores"], np.float32),
                          person_ids=np.asarray(ex["person_ids"], np.int32), source=source)
