"""The training loop's cost outside the step: steady-state step time of `train_and_evaluate` vs the bare step.

    python benchmarks/loop_overhead.py [--config configs/default.py] [--warmup 20] [--steps 60]
                                       [--bare_steps 20] [--workdir /tmp/loop_overhead]

Both are measured in one process on the config's own training data (the synthetic dataset is generated under
data.root when absent): first the bare jitted step on one fixed batch of the input's first step, `--bare_steps`
times (median and min); then the real loop (input pipeline, metrics, logging, checkpoints every
checkpoint.every_steps) for `--warmup + --steps` steps, timed from the end of step `--warmup` to the end of the last
step (a hook blocks on the state at those two points only). The loop's checkpoints go to a fresh `--workdir`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from acar_jax.launch import host_memory  # noqa: E402

if __name__ == "__main__":
    host_memory.reexec_with_huge_pages(Path(__file__).name)   # as run.py does: the loop users run

import jax  # noqa: E402
import numpy as np  # noqa: E402

from acar_jax.core import parallel  # noqa: E402
from acar_jax.core.batch import TRAIN_KEYS  # noqa: E402
from acar_jax.launch.config_files import load_config  # noqa: E402
from acar_jax.launch.prepare import prepare_data  # noqa: E402
from acar_jax.training import loop, train_step  # noqa: E402
from data_pipelines import ava_files, clips  # noqa: E402


def bare_step_times(config, steps: int) -> list[float]:
    """Seconds per call of the jitted step on the input's first batch (each call waited for)."""
    prepare_data(config)
    records = ava_files.load_keyframe_records(config.data, "train")
    train_input = clips.TrainInput(records, config.data, global_batch_size=int(config.train.batch_size),
                                   seed=int(config.data.shuffle_seed), num_classes=int(config.model.num_classes))
    it = train_input.iterator(0)
    host_batch = next(it)
    it.close()
    model = loop.setup_model_state(config)
    step = train_step.make_train_step(model.graphdef, model.tx, model.mesh,
                                      roi_loss_fn=loop.config_roi_loss(config),
                                      grad_accum_steps=int(config.train.grad_accum_steps))
    batch = parallel.shard_batch(host_batch, model.mesh, TRAIN_KEYS)
    state = model.state
    state, metrics = step(state, model.rng_state, batch, np.float32(1e-4))   # compile
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, model.rng_state, batch, np.float32(1e-4))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return times


def loop_step_time(config, workdir: str, warmup: int, steps: int) -> float:
    """Mean seconds per step of the real loop over steps warmup+1 .. warmup+steps."""
    marks: dict[int, float] = {}

    def mark(done: int, run) -> None:
        if done in (warmup, warmup + steps):
            jax.block_until_ready(run.model.state)
            marks[done] = time.perf_counter()

    config.train.num_steps = warmup + steps
    loop.train_and_evaluate(config, workdir, final_eval=False, hooks=loop.Hooks(after_step=mark))
    return (marks[warmup + steps] - marks[warmup]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.py"))
    parser.add_argument("--warmup", type=int, default=20, help="loop steps before timing (compile, pipeline fill)")
    parser.add_argument("--steps", type=int, default=60, help="timed loop steps")
    parser.add_argument("--bare_steps", type=int, default=20)
    parser.add_argument("--workdir", default="", help="loop workdir (default: a temporary directory)")
    parser.add_argument("--data_root", default="", help="override config.data.root")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.bare_steps < 1:
        parser.error("--warmup, --steps and --bare_steps must be >= 1")

    config = load_config(args.config)
    if args.data_root:
        config.data.root = args.data_root
    bare = bare_step_times(config, args.bare_steps)
    workdir = args.workdir or tempfile.mkdtemp(prefix="loop_overhead_")
    shutil.rmtree(workdir, ignore_errors=True)
    loop = loop_step_time(config, workdir, args.warmup, args.steps)
    med = statistics.median(bare)
    print(f"{Path(args.config).name}, {jax.device_count()} x {jax.devices()[0].device_kind}, batch "
          f"{config.train.batch_size}, {args.steps} loop steps after {args.warmup}; {host_memory.describe()}")
    print(f"{'bare step median (ms)':>22}{'bare min (ms)':>14}{'loop step (ms)':>15}{'loop / bare median':>20}")
    print(f"{med * 1e3:>22.1f}{min(bare) * 1e3:>14.1f}{loop * 1e3:>15.1f}{loop / med:>20.3f}")


if __name__ == "__main__":
    main()
