"""Exports a trained model as a serving artifact with a standalone loader: a `jax.export` artifact
(acar_jax/inference/export/serving.py) and/or a TF SavedModel (acar_jax/inference/export/saved_model.py).

  python tools/export.py --config=configs/default.py --workdir=runs/default --output=model_dir \
      --height=64 --width=384 [--batch=b] [--frames=8] [--max_boxes=8] [--platforms=cpu,cuda,tpu] \
      [--format=jax,savedmodel]

Both compute (clips, boxes, box_mask, valid_hw) -> scores with the weights of the workdir's latest checkpoint
(baked into the jax artifact; TF variables in the SavedModel); `--batch=b` (default) leaves the batch symbolic,
the other sizes are fixed. After writing, the tool runs each artifact once on random inputs of batch 2 against
acar_jax.api.load_model(...).predict and prints the largest difference (on the host's platform, when it is
among --platforms).
Run them with jax alone: `python model_dir/load_exported.py model_dir inputs.npz scores.npy`, or TensorFlow
alone: `python model_dir/load_saved_model.py model_dir inputs.npz scores.npy`.
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
_FORMAT = flags.DEFINE_list("format", ["jax"], "what to write, comma-separated: jax (model.jaxexport, jax.export) "
                            "and/or savedmodel (saved_model/, a TF SavedModel via jax2tf)")
FORMATS = ("jax", "savedmodel")
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
    if not _FORMAT.value or set(_FORMAT.value) - set(FORMATS):
        raise app.UsageError(f"--format: expected a comma-separated subset of {', '.join(FORMATS)}, got "
                             f"{','.join(_FORMAT.value)}")
    logging.set_verbosity(logging.WARNING)
    try:
        batch = None if _BATCH.value == "b" else int(_BATCH.value)
    except ValueError:
        sys.exit(f"export: --batch: expected an integer or 'b', got {_BATCH.value!r}")
    import jax  # noqa: PLC0415 (flags are parsed before jax loads)
    import numpy as np  # noqa: PLC0415

    from acar_jax import api  # noqa: PLC0415
    from acar_jax.inference.export import serving  # noqa: PLC0415
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
    formats = set(_FORMAT.value)
    artifacts = ([serving.ARTIFACT] if "jax" in formats else []) + (["saved_model"] if "savedmodel" in formats
                                                                    else [])
    signature = serving.signature_of(model, exported, label_map.ids, label_map.names, artifacts)
    if "jax" in formats:
        paths = serving.write_artifact(exported, _OUTPUT.value, signature)
    else:
        paths = [serving.write_signature(_OUTPUT.value, signature)]
    if "savedmodel" in formats:
        from acar_jax.inference.export import saved_model  # noqa: PLC0415 (TensorFlow only when asked for)
        paths += saved_model.write_saved_model(
            model, _OUTPUT.value, batch=batch, frames=exported.in_avals[0].shape[1], height=_HEIGHT.value,
            width=_WIDTH.value, max_boxes=exported.in_avals[1].shape[1], platforms=_PLATFORMS.value)
    print("wrote " + ", ".join(paths))
    if jax.default_backend() in exported.platforms:
        inputs = serving.random_inputs(exported, batch=batch or 2)
        want = np.asarray(model.predict(*inputs.values()))
        runs = ([("jax artifact", lambda: exported.call(*inputs.values()))] if "jax" in formats else []) + (
            [("SavedModel", lambda: saved_model.run_saved_model(_OUTPUT.value, inputs))] if "savedmodel" in formats
            else [])
        for name, run in runs:
            got = np.asarray(run())
            print(f"check on random inputs ({jax.default_backend()}): max |{name} - predict| = "
                  f"{float(np.abs(got - want).max()):.2e}")


if __name__ == "__main__":
    app.run(main)
