"""float32 vs bfloat16 compute on the default synthetic job over 3 seeds (6 runs): bf16's effect on frame-mAP
against the seed spread.

  python tools/sweep.py --sweep=configs/sweeps/default_dtypes.py --base_config=configs/default.py \
      --workdir_root=runs/sweep_default_dtypes [--dry_run]
  python tools/seed_table.py --workdir_root=runs/sweep_default_dtypes --baseline=dtype=float32
"""

from configs.sweeps import product


def get_sweep() -> list[dict[str, object]]:
    """Seed x compute dtype (each seed's pair runs back to back); everything else is default.py."""
    return product({
        "seed": [0, 1, 2],
        "model.dtype": ["float32", "bfloat16"],
    })
