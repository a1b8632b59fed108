"""Times the sharded train step of a config on the available devices (synthetic inputs of the config's shapes).

    python benchmarks/train_step.py [--config configs/default.py] [--batch 8] [--height H] [--width W]
                                    [--boxes 8] [--steps 10] [--dtype float32]

Compilation and one warm-up step are excluded; the table shows the median step time over `--steps` steps,
steps/s and clips/s. Inputs are random clips with every box real, so no step is skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from acar_jax import parallel  # noqa: E402
from acar_jax.batch import TRAIN_KEYS  # noqa: E402
from acar_jax.config_files import load_config  # noqa: E402
from acar_jax.experiment import config_roi_loss, setup_model_state  # noqa: E402
from acar_jax.training import train_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.py"))
    parser.add_argument("--batch", type=int, default=8, help="global clips per step")
    parser.add_argument("--height", type=int, default=None, help="clip height (default: config.synthetic.height)")
    parser.add_argument("--width", type=int, default=None, help="clip width (default: config.synthetic.width)")
    parser.add_argument("--boxes", type=int, default=8, help="N_max boxes per clip (all real)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtype", default=None, help="override config.model.dtype")
    args = parser.parse_args()

    config = load_config(args.config)
    if args.dtype:
        config.model.dtype = args.dtype
    args.height = args.height or int(config.synthetic.height)
    args.width = args.width or int(config.synthetic.width)
    train_step.check_batch_size(args.batch, jax.device_count(), int(config.train.grad_accum_steps))
    model = setup_model_state(config)
    mesh, state, rng_state = model.mesh, model.state, model.rng_state
    step = train_step.make_train_step(model.graphdef, model.tx, mesh, roi_loss_fn=config_roi_loss(config),
                                      grad_accum_steps=int(config.train.grad_accum_steps))
    rng = np.random.default_rng(0)
    b, n, k, t = args.batch, args.boxes, int(config.model.num_classes), int(config.data.num_frames)
    xy = rng.uniform(0, 0.5, (b, n, 2))
    batch = {"clips": rng.standard_normal((b, t, args.height, args.width, 3), dtype=np.float32),
             "boxes": np.concatenate([xy, xy + 0.4], -1).astype(np.float32), "box_mask": np.ones((b, n), bool),
             "valid_hw": np.tile(np.array([[args.height, args.width]], np.int32), (b, 1)),
             "labels": (rng.uniform(size=(b, n, k)) < 0.2).astype(np.float32)}
    batch = parallel.shard_batch(batch, mesh, TRAIN_KEYS)
    start = time.perf_counter()
    state, metrics = step(state, rng_state, batch, jnp.float32(0.01))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = step(state, rng_state, batch, jnp.float32(0.01))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"{Path(args.config).name}, {jax.device_count()} x {jax.devices()[0].device_kind}, batch {b} x "
          f"[{t}, {args.height}, {args.width}, 3], {n} boxes, dtype {config.model.dtype}")
    print(f"{'compile+1st (s)':>16}{'step (ms)':>11}{'steps/s':>9}{'clips/s':>9}")
    print(f"{compile_s:>16.1f}{med * 1e3:>11.1f}{1 / med:>9.2f}{b / med:>9.1f}")


if __name__ == "__main__":
    main()
