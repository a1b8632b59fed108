"""The ACFB chain (ACAR -> bank -> ACFB, and the LFB-style variant) on the synthetic long-term task over 3 seeds:
the README's ACAR / ACFB / LFB-style table, mean and spread per class group (`python tools/acfb_table.py`).

  python tools/sweep.py --sweep=configs/sweeps/acfb_seeds.py --base_config=configs/default_acfb.py \
      --workdir_root=runs/sweep_acfb
"""

from configs.sweeps import product


def get_sweep() -> list[dict[str, object]]:
    """Seeds only: the seed of every stage's model initialisation and dropout (the dataset stays the same)."""
    return product({"seed": [0, 1, 2]})
