"""Writes the built-in synthetic AVA-format dataset of a config (run.py does this itself when it is absent).

    python tools/make_synthetic_data.py [--config=configs/default.py] [--out=DIR] [--config.synthetic.seed=1 ...]
    python tools/make_synthetic_data.py --config=configs/default_longterm.py    # the long-term (ACFB) set

The generator is the config's `data.dataset` ("synthetic": data_pipelines/synthetic.py, "synthetic_longterm":
data_pipelines/synthetic_longterm.py), its parameters the config's `synthetic` fields; `--out` defaults to the
config's `data.root`.
An existing dataset written with other parameters is an error that names them (remove it to regenerate).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from data_pipelines import synthetic, synthetic_longterm  # noqa: E402

GENERATORS = {"synthetic": synthetic.ensure_synthetic_dataset, "synthetic_longterm": synthetic_longterm.ensure_dataset}

_CONFIG = config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "default.py"),
                                          "experiment config whose `synthetic` fields describe the dataset")
_OUT = flags.DEFINE_string("out", None, "dataset root to write (default: the config's data.root)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    out = _OUT.value or config.data.root
    if config.data.dataset not in GENERATORS:
        sys.exit(f"make_synthetic_data: config.data.dataset is {config.data.dataset!r}, not a generated dataset "
                 f"({', '.join(GENERATORS)})")
    try:
        GENERATORS[config.data.dataset](out, config.synthetic)
    except ValueError as e:
        sys.exit(f"make_synthetic_data: {e}")
    print(f"synthetic dataset at {os.path.abspath(out)}", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
