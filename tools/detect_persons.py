"""Runs the configured person detector (config.demo.detector: hog, torchvision or onnx) over the keyframes of
videos or frame folders and writes their boxes as an AVA proposal CSV (`video_id,timestamp,x1,y1,x2,y2,,score`),
which `--mode=demo` (config.demo.boxes_csv) and evaluation (config.data.val_proposals) read.

  python tools/detect_persons.py --config=configs/default.py --input=my_video.mp4 --output=boxes.csv \
      --config.demo.detector=torchvision [--config.demo.detector_threshold=0.5]
  python tools/detect_persons.py --config=configs/ava_slowfast_r50_acar.py --input=data/ava/frames/<video_id> ...

Keyframes are the demo's (acar_jax/inference/keyframe_detection.py says how videos and frame folders are read).
Every detector box is written (scores >= config.demo.detector_threshold), so keep the threshold low and let
box_threshold / val_proposal_threshold choose later. Resumable: keyframes already in the CSV (or in
`<output>.keyframes`, which also lists keyframes without people) are skipped, and each video's rows are appended
in one atomic replace.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages are importable
    sys.path.insert(0, str(ROOT))

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (configs/*.py): data.fps, demo.detector...",
                                          lock_config=True)
_INPUT = flags.DEFINE_list("input", None, "videos and/or frame folders (comma-separated)")
_OUTPUT = flags.DEFINE_string("output", None, "the AVA proposal CSV to write (appended to, resumable)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required (e.g. configs/default.py): its data.fps and demo.* fields")
    if not _INPUT.value or not _OUTPUT.value:
        raise app.UsageError("--input and --output are required")
    logging.set_verbosity(logging.WARNING)
    from acar_jax.inference.keyframe_detection import detect_persons  # noqa: PLC0415 (flags before jax loads)

    try:
        detect_persons(_CONFIG.value, _INPUT.value, _OUTPUT.value)
    except (ValueError, FileNotFoundError, ImportError) as e:
        sys.exit(f"detect_persons: {e}")


if __name__ == "__main__":
    app.run(main)
