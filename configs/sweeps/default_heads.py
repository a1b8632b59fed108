"""ACAR vs Linear head on the default synthetic job over 3 seeds (6 runs): the relational-head comparison
with its seed spread.

  python tools/sweep.py --sweep=configs/sweeps/default_heads.py --base_config=configs/default.py \
      --workdir_root=runs/sweep_default_heads [--dry_run]
"""

from configs.sweeps import product


def get_sweep() -> list[dict[str, object]]:
    """Head type x seed; everything else is default.py."""
    return product({
        "model.head.type": ["acar", "linear"],
        "seed": [0, 1, 2],
    })
