"""Exports a trained model as a `jax.export` serving artifact (acar_jax/serving.py) with a standalone loader.

  python tools/export.py --config=configs/default.py --workdir=runs/default --output=model_dir \
      --height=64 --width=384 [--batch=b] [--frames=8] [--max_boxes=8] [--platforms=cpu,cuda,tpu]

The artifact computes (clips, boxes, box_mask, valid_hw) -> scores with the weights of the workdir's latest
checkpoint baked in; `--batch=b` (default) leaves the batch symbolic, the other sizes are fixed. After writing,
the tool runs the artifact once on random inputs of batch 2 against acar_jax.api.load_model(...).predict and
prints the largest difference (on the host's platform, when it is among --platforms).
Run it with jax alone: `python model_dir/load_exported.py model_dir inputs.npz scores.npy`.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages are importable
    sys.path.insert(0, str(ROOT))

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file of the model (configs/*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (or converted checkpoint) holding the weights")
_OUTPUT = flags.DEFINE_string("output", None, "directory to write model.jaxexport, signature.json, the loader")
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu"], "platforms to lower for: cpu, cuda, rocm, tpu")
_BATCH = flags.DEFINE_string("batch", "b", "clips per call: an integer, or 'b' for a symbolic batch")
_FRAMES = flags.DEFINE_integer("frames", None, "frames per clip (default: config.data.num_frames)")
_HEIGHT = flags.DEFINE_integer("height", None, "clip height in pixels (padded size the server feeds)")
_WIDTH = flags.DEFINE_integer("width", None, "clip width in pixels")
_MAX_BOXES = flags.DEFINE_integer("max_boxes", None, "N_max boxes per clip (default: the largest "
                                  "config.data.box_buckets entry)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name, flag in (("--workdir", _WORKDIR), ("--output", _OUTPUT), ("--height", _HEIGHT), ("--width", _WIDTH)):
        if flag.value is None:
            raise app.UsageError(f"{name} is required")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required (the model's config file, e.g. configs/default.py)")
    logging.set_verbosity(logging.WARNING)
    try:
        batch = None if _BATCH.value == "b" else int(_BATCH.value)
    except ValueError:
        sys.exit(f"export: --batch: expected an integer or 'b', got {_BATCH.value!r}")
    import jax  # noqa: PLC0415 (flags are parsed before jax loads)
    import numpy as np  # noqa: PLC0415

    from acar_jax import api, serving  # noqa: PLC0415
    from data_pipelines import ava_files  # noqa: PLC0415

    config = _CONFIG.value
    try:
        model = api.load_model(config, _WORKDIR.value)
        exported = serving.export_model(
            model, batch=batch, frames=_FRAMES.value or int(config.data.num_frames), height=_HEIGHT.value,
            width=_WIDTH.value, max_boxes=_MAX_BOXES.value or max(config.data.box_buckets),
            platforms=_PLATFORMS.value)
        label_map = ava_files.read_label_map(ava_files.resolve_path(config.data.root, config.data.label_map))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"export: {e}")
    paths = serving.write_artifact(exported, _OUTPUT.value,
                                   serving.signature_of(model, exported, label_map.ids, label_map.names))
    print("wrote " + ", ".join(paths))
    if jax.default_backend() in exported.platforms:
        inputs = serving.random_inputs(exported, batch=batch or 2)
        got = np.asarray(exported.call(*inputs.values()))
        want = np.asarray(model.predict(*inputs.values()))
        print(f"check on random inputs ({jax.default_backend()}): max |artifact - predict| = "
              f"{float(np.abs(got - want).max()):.2e}")


if __name__ == "__main__":
    app.run(main)
