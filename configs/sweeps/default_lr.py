"""Peak learning rate x seed on the default synthetic job (6 runs).

  python tools/sweep.py --sweep=configs/sweeps/default_lr.py --base_config=configs/default.py \
      --workdir_root=runs/sweep_default_lr [--dry_run]
"""

from configs.sweeps import product


def get_sweep() -> list[dict[str, object]]:
    """warmup_lr is the rate after warmup (the reference's and the paper's "base lr")."""
    return product({
        "train.schedule.warmup_lr": [1e-3, 2e-3, 4e-3],
        "seed": [0, 1],
    })
