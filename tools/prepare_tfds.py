"""Packs a split of a config's dataset into ArrayRecord shards for `config.data.source = "tfds"`.

    python tools/prepare_tfds.py --config=configs/ava_slowfast_r50_acar.py --split=train [--keyframes_per_shard=256]

Reads the keyframes as training from frame files does (config.data: root, CSVs, thresholds, frames) and writes
each keyframe's clip (its JPEG files at data.num_frames x data.frame_stride), boxes and labels into
`data.root/data.tfds_dir` (data_pipelines/packed_clips.py has the layout). Interrupted, the same command resumes:
complete shards are kept, a half-written one is never taken for complete. Prepare the splits one after another
(they share packing.json).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "default.py"),
                                          "experiment config whose `data` fields say what to pack and where")
_SPLIT = flags.DEFINE_enum("split", None, ["train", "val"], "split to pack")
_KEYFRAMES_PER_SHARD = flags.DEFINE_integer("keyframes_per_shard", 256,
                                            "keyframes per shard (AVA R50 8x8: about 200 MB per shard)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from data_pipelines import ava_files, frame_index, packed_clips, packed_prepare, synthetic  # noqa: PLC0415

    config = _CONFIG.value
    start = time.perf_counter()
    try:
        if config.data.dataset == "synthetic":
            synthetic.ensure_synthetic_dataset(config.data.root, config.synthetic)
        entry = packed_prepare.prepare_split(config.data, _SPLIT.value, num_classes=int(config.model.num_classes),
                                             keyframes_per_shard=_KEYFRAMES_PER_SHARD.value,
                                             log=lambda line: print(line, file=sys.stderr))
    except (ava_files.MissingDataError, ava_files.AvaFormatError, packed_clips.ShardsConfigError,
            frame_index.FrameReadError, FileNotFoundError, ValueError) as e:   # the user's files or config
        sys.exit(f"prepare_tfds: {e}")
    per_keyframe = entry["num_bytes"] / max(entry["num_keyframes"], 1)
    print(f"{_SPLIT.value}: {entry['num_keyframes']} keyframes, {entry['num_bytes'] / 1e9:.3f} GB "
          f"({per_keyframe / 1e3:.1f} kB per keyframe) in {packed_clips.shards_dir(config.data)} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    flags.mark_flag_as_required("split")
    app.run(main)
