"""The data-parallel train step: one program per device over a 1-D `data` mesh axis (`jax.shard_map`), jitted.

Loss scale (reference `main.py`: `loss * num_rois / total_rois * world_size` with DDP's gradient mean): the
gradient is the mean over all real RoIs of the global batch. Each device's loss is (sum of its per-RoI losses) /
(global real-RoI count, a `psum`); inside `shard_map` with `check_vma` on, autodiff already sums the gradient of a
replicated parameter over the axis, so the gradients get NO further collective (a `pmean` would leave them
unchanged and an extra `psum` would scale them by the device count; tests compare 8 devices with 1).
A global batch without real RoIs skips the update (parameters and momentum unchanged, as the reference skips
`optimizer.step`); the step counter still advances, and the schedule is indexed by it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from acar_jax.core.batch import BANK_KEYS
from acar_jax.core.parallel import AXIS
from acar_jax.state.train_state import TrainState
from acar_jax.training import optim

RoiLossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (logits, labels, box_mask) -> [B, N]


class NonFiniteLossError(FloatingPointError):
    """Raised by the loop when a step's loss or gradient is not finite (its update is never applied)."""


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mesh: Mesh, *,
                    roi_loss_fn: RoiLossFn, grad_accum_steps: int = 1, seed: int = 0
                    ) -> Callable[[TrainState, nnx.State, dict, jax.Array], tuple[TrainState, dict]]:
    """The jitted sharded step `(state, rng_state, batch, lr) -> (state, metrics)`.

    batch: global arrays of acar_jax.core.batch.TRAIN_KEYS (+ BANK_KEYS for a feature-bank head) sharded over
    `data` (acar_jax.core.parallel.shard_batch); lr: [] float32 rate of this step.
    Dropout key of device d at step s, micro-batch m: fold_in(fold_in(fold_in(key(seed), s), d), m), so a
    resumed run draws the same masks. metrics (replicated): loss (mean over the global batch's real RoIs),
    num_rois, grad_norm, applied (1 when the update was applied), finite.
    """
    root_key = jax.random.key(seed)

    def per_device(state: TrainState, rng_state: nnx.State, batch: dict, lr: jax.Array):
        box_mask = batch["box_mask"]
        total = jax.lax.psum(jnp.sum(box_mask, dtype=jnp.float32), AXIS)      # real RoIs of the global batch
        denom = jnp.maximum(total, 1.0)
        device_key = jax.random.fold_in(jax.random.fold_in(root_key, state.step), jax.lax.axis_index(AXIS))
        if box_mask.shape[0] % grad_accum_steps:
            raise ValueError(f"{box_mask.shape[0]} clips per device do not split into train.grad_accum_steps="
                             f"{grad_accum_steps} micro-batches")
        micro = jax.tree.map(lambda x: x.reshape((grad_accum_steps, x.shape[0] // grad_accum_steps)
                                                 + x.shape[1:]), batch)

        def loss_fn(params, mb, rngs):
            model = nnx.merge(graphdef, params, state.batch_stats, rngs, copy=True)
            bank = {k: mb[k] for k in BANK_KEYS if k in mb}          # feature-bank heads only
            logits = model(mb["clips"], mb["boxes"], mb["box_mask"], mb["valid_hw"], train=True, **bank)
            per_roi = roi_loss_fn(logits.astype(jnp.float32), mb["labels"], mb["box_mask"])
            return jnp.sum(jnp.where(mb["box_mask"], per_roi, 0.0)) / denom

        def accumulate(carry, xs):
            grads, loss = carry
            m, mb = xs
            rngs = reseed_dropout(rng_state, jax.random.fold_in(device_key, m))
            value, g = jax.value_and_grad(loss_fn)(state.params, mb, rngs)
            return (jax.tree.map(jnp.add, grads, g), loss + value), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        loss0 = jax.lax.pcast(jnp.zeros((), jnp.float32), AXIS, to="varying")
        if grad_accum_steps == 1:   # no loop: XLA:CPU runs a scan body ~4x slower (measured, tiny model)
            (grads, device_loss), _ = accumulate((zeros, loss0), (0, jax.tree.map(lambda x: x[0], micro)))
        else:
            (grads, device_loss), _ = jax.lax.scan(accumulate, (zeros, loss0),
                                                   (jnp.arange(grad_accum_steps), micro))
        loss = jax.lax.psum(device_loss, AXIS)        # grads are already summed over `data` by autodiff
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        applied = (total > 0) & finite
        direction, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optim.apply_updates(state.params, direction, lr)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(applied, n, o), new, old)
        new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                                  opt_state=keep(opt_state, state.opt_state))
        metrics = {"loss": loss, "num_rois": total, "grad_norm": grad_norm,
                   "applied": applied.astype(jnp.float32), "finite": finite.astype(jnp.float32)}
        return new_state, metrics

    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(AXIS), P()), out_specs=(P(), P()))
    return jax.jit(sharded, donate_argnums=(0,))


def reseed_dropout(rng_state: nnx.State, key: jax.Array) -> nnx.State:
    """`rng_state` with every 'dropout' stream key set to `key` and its count to 0: a pure tree map (nnx.reseed
    mutates Variables, which nnx refuses across the scan / grad trace levels of the step)."""
    def set_key(v):
        if isinstance(v, nnx.RngKey | nnx.RngCount) and getattr(v, "tag", None) == "dropout":
            return v.replace(key if isinstance(v, nnx.RngKey) else jnp.zeros_like(v[...]))
        return v
    return jax.tree.map(set_key, rng_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def check_finite(metrics: Mapping[str, jax.Array], step: int) -> None:
    """Raises NonFiniteLossError naming `step` when its loss or gradient was not finite."""
    if not bool(np.asarray(metrics["finite"])):
        raise NonFiniteLossError(
            f"step {step}: non-finite loss ({float(np.asarray(metrics['loss']))}) or gradient norm "
            f"({float(np.asarray(metrics['grad_norm']))}); training stopped, the update of this step was not "
            "applied and no checkpoint of it is written (try a lower learning rate or float32)")
