"""Converts a released PyTorch checkpoint (ACAR-Net or PySlowFast) into an orbax checkpoint of this project.

  python tools/convert_torch_checkpoint.py --input CKPT --config CONFIG --output DIR \
      [--allow_missing=head] [--allow_unused=classifier] [--scheme=auto|acar|pyslowfast] [--trust_pickle] \
      [--config.x=y ...]

DIR is written as a run's workdir (`DIR/checkpoints/0`: params, BatchNorm statistics, a zero optimiser state),
so every consumer takes it unchanged: `run.py --workdir=DIR --mode=eval`, `run.py
--config.checkpoint.init_from=DIR [--config.checkpoint.init_scope=backbone]` and `api.load_model(CONFIG, DIR)`.
Strict by default (acar_jax/interop/torch_import.py): every key used once, every array filled, shapes checked. A
Kinetics backbone has no AVA head and carries a Kinetics classifier: `--allow_missing=head
--allow_unused=classifier` keeps the head at its initialisation (config.seed) and lists the classifier keys.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages are importable
    sys.path.insert(0, str(ROOT))

from acar_jax.interop import torch_import  # noqa: E402
from acar_jax.state import train_state  # noqa: E402

_INPUT = flags.DEFINE_string("input", None, "PyTorch checkpoint (.pth, .pth.tar, .pyth)")
_CONFIG = config_flags.DEFINE_config_file("config", None, "config file of the target model (configs/*.py)",
                                          lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "directory to write (a workdir: DIR/checkpoints/0); must not "
                              "hold a checkpoint yet")
_ALLOW_MISSING = flags.DEFINE_list("allow_missing", [], f"model subtrees the checkpoint may lack, kept at "
                                   f"their initial values: {', '.join(torch_import.MISSING_GROUPS)}")
_ALLOW_UNUSED = flags.DEFINE_list("allow_unused", [], f"checkpoint key groups that may stay unused: "
                                  f"{', '.join(torch_import.UNUSED_GROUPS)}")
_SCHEME = flags.DEFINE_enum("scheme", "auto", ["auto", "acar", "pyslowfast"], "key naming of the input")
_TRUST_PICKLE = flags.DEFINE_bool("trust_pickle", False, "allow arbitrary unpickling (runs code stored in the "
                                  "file): only for files you trust")


def convert(input_path: str, config, output: str, *, allow_missing: Sequence[str] = (),
            allow_unused: Sequence[str] = (), scheme: str | None = None,
            trust_pickle: bool = False, create=None) -> torch_import.ImportReport:
    """Reads `input_path`, imports it strictly into the model of `config` and writes `output`; the report.
    `create(config)` builds the target module (default: the detector of config.model)."""
    from flax import nnx  # noqa: PLC0415 (flags are parsed before jax loads)

    from acar_jax.launch.config_files import load_config  # noqa: PLC0415
    from acar_jax.models.detector import create_model  # noqa: PLC0415
    from acar_jax.state import checkpoints  # noqa: PLC0415
    from acar_jax.training import optim  # noqa: PLC0415

    config = load_config(config)
    directory = os.path.join(os.path.abspath(output), checkpoints.CHECKPOINT_SUBDIR)
    if os.path.isdir(directory) and os.listdir(directory):
        raise FileExistsError(f"--output: {directory} already holds checkpoints; choose a new directory")
    source, container = torch_import.load_torch_file(input_path, trust_pickle=trust_pickle)
    # Abstract unless something may stay missing: then the kept arrays need their real initial values.
    build = lambda: (create or create_model)(config)
    model = build() if allow_missing else nnx.eval_shape(build)
    report = torch_import.import_into(model, source, scheme=None if scheme in (None, "auto") else scheme,
                                      allow_missing=allow_missing, allow_unused=allow_unused, container=container,
                                      source_name=input_path)
    # A full step-0 TrainState (with the config's optimiser state), so --mode=eval and resume read it as a run's.
    _, _, state = train_state.create_train_state(model, optim.gradient_transformation(config.train.optimizer))
    ckpt = checkpoints.Checkpointer(output, every_steps=1, max_to_keep=1)
    try:
        if not ckpt.save(state, force=True):
            raise RuntimeError(f"--output: orbax did not write step 0 under {ckpt.directory}")
    finally:
        ckpt.close()
    return report


def main(argv: list[str], create=None) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO; the report is the output
    for name, flag in (("--input", _INPUT), ("--output", _OUTPUT)):
        if not flag.value:
            raise app.UsageError(f"{name} is required")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required (the target model's config file, e.g. "
                             "configs/ava_slowfast_r50_acar.py)")
    try:
        report = convert(_INPUT.value, _CONFIG.value, _OUTPUT.value, allow_missing=_ALLOW_MISSING.value,
                         allow_unused=_ALLOW_UNUSED.value, scheme=_SCHEME.value, trust_pickle=_TRUST_PICKLE.value,
                         create=create)
    except (torch_import.CheckpointImportError, FileExistsError, FileNotFoundError, ValueError) as e:
        sys.exit(f"convert_torch_checkpoint: {e}")
    print(report.format())
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    print(f"wrote {os.path.join(os.path.abspath(_OUTPUT.value), 'checkpoints', '0')}\n"
          f"evaluate:  python run.py --config={config_file} --workdir={_OUTPUT.value} --mode=eval\n"
          f"fine-tune: python run.py --config={config_file} --config.checkpoint.init_from={_OUTPUT.value}"
          + (" --config.checkpoint.init_scope=backbone" if report.missing.get("head") else ""))


if __name__ == "__main__":
    app.run(main)
