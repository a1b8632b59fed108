"""A tiny stand-in detector and runs of the sharded step, shared by test_train_step.py and its 8-device
subprocess (`python -m tests.helpers.tiny_models OUT.npz` under XLA_FLAGS=--xla_force_host_platform_device_count=8).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from acar_jax.core import parallel
from acar_jax.core.batch import TRAIN_KEYS
from acar_jax.models.layers import Conv3d
from acar_jax.state import train_state
from acar_jax.training import optim, train_step

K = 5  # classes


class TinyBackbone(nnx.Module):
    """Frozen normalisation (nnx.BatchStat) + a conv: clips [B, T, H, W, 3] -> [B, 4]."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.mean = nnx.BatchStat(jnp.full((3,), 0.1))
        self.var = nnx.BatchStat(jnp.full((3,), 2.0))
        self.conv = nnx.Conv(3, 4, (1, 3, 3), rngs=rngs)

    def __call__(self, clips):
        x = (clips - self.mean[...]) / jnp.sqrt(self.var[...])
        return jax.nn.relu(self.conv(x)).mean(axis=(1, 2, 3))


class FoldedConvBackbone(nnx.Module):
    """TinyBackbone with the library's folded Conv3d inside the sharded step's `shard_map`: a 3x3x3 stem on the
    3 input channels ("auto": temporal taps as outputs, the per-row kernel gradient) and a stride-1 dilated
    1x3x3 kernel, as res5's, rematerialised ("taps": the per-tap kernel gradient)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.mean = nnx.BatchStat(jnp.full((3,), 0.1))
        self.var = nnx.BatchStat(jnp.full((3,), 2.0))
        self.conv1 = Conv3d(3, 14, 3, padding=1, path="folded", kernel_grad="auto", rngs=rngs)  # 3 x 14 >= 40
        self.conv2 = Conv3d(14, 4, (1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2), path="folded",
                            kernel_grad="taps", rngs=rngs)

    def __call__(self, clips):
        x = jax.nn.relu(self.conv1((clips - self.mean[...]) / jnp.sqrt(self.var[...])))
        return jax.nn.relu(nnx.remat(lambda conv, x: conv(x))(self.conv2, x)).mean(axis=(1, 2, 3))


class TinyHead(nnx.Module):
    """Dropout + a per-box classifier on [clip feature, box]."""

    def __init__(self, num_classes: int, *, rngs: nnx.Rngs, dropout: float):
        self.fc = nnx.Linear(8, num_classes, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, f, boxes, train):
        feats = jnp.concatenate([jnp.broadcast_to(f[:, None], boxes.shape[:2] + (4,)), boxes], -1)
        return self.fc(self.drop(feats, deterministic=not train))


class TinyDetector(nnx.Module):
    """The detector's interface (clips, boxes, box_mask, valid_hw, train) -> [B, N, K], with `backbone` and
    `head` attributes as the real detector."""

    def __init__(self, *, rngs: nnx.Rngs, dropout: float = 0.0, num_classes: int = K, folded_convs: bool = False):
        self.backbone = FoldedConvBackbone(rngs=rngs) if folded_convs else TinyBackbone(rngs=rngs)
        self.head = TinyHead(num_classes, rngs=rngs, dropout=dropout)

    def __call__(self, clips, boxes, box_mask, valid_hw, *, train=False):
        return self.head(self.backbone(clips), boxes, train)


def roi_bce(logits, labels, box_mask):
    """Per-RoI mean sigmoid BCE, 0 where masked ([B, N])."""
    return jnp.where(box_mask, optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1), 0.0)


def make_batch(seed: int, b: int, n: int, counts) -> dict[str, np.ndarray]:
    """A batch of b clips [b, 4, 8, 8, 3] with counts[i] real boxes in clip i (random multi-hot labels)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((b, n), bool)
    for i, c in enumerate(counts):
        mask[i, :c] = True
    xy = rng.uniform(0, 0.5, size=(b, n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, size=(b, n, 2))], -1).astype(np.float32)
    return {"clips": rng.normal(size=(b, 4, 8, 8, 3)).astype(np.float32),
            "boxes": np.where(mask[..., None], boxes, 0).astype(np.float32), "box_mask": mask,
            "valid_hw": np.full((b, 2), 8, np.int32),
            "labels": np.where(mask[..., None], rng.integers(0, 2, size=(b, n, K)), 0).astype(np.float32)}


def sgd(momentum=0.9, nesterov=True, weight_decay=1e-7):
    return optim.gradient_transformation(ml_collections.ConfigDict(dict(
        name="sgd", momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)))


def run(batches, lrs, *, tx=None, grad_accum_steps=1, dropout=0.0, devices=None, folded_convs=False):
    """Runs the sharded step over `batches`; returns (flat params dict, list of metrics, final state)."""
    mesh = parallel.make_mesh(devices)
    model = TinyDetector(rngs=nnx.Rngs(params=0, dropout=1), dropout=dropout, folded_convs=folded_convs)
    tx = tx if tx is not None else sgd()
    graphdef, rng_state, state = train_state.create_train_state(model, tx)
    state = parallel.replicate(state, mesh)
    rng_state = parallel.replicate(rng_state, mesh)
    step = train_step.make_train_step(graphdef, tx, mesh, roi_loss_fn=roi_bce,
                                      grad_accum_steps=grad_accum_steps, seed=3)
    metrics = []
    for batch, lr in zip(batches, lrs, strict=True):
        state, m = step(state, rng_state, parallel.shard_batch(batch, mesh, TRAIN_KEYS), jnp.float32(lr))
        metrics.append(jax.device_get(m))
    return flat(state.params), metrics, state


def flat(params) -> dict[str, np.ndarray]:
    return {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(params)}


def scenarios() -> dict[str, np.ndarray]:
    """Every quantity the tests compare between 1 and 8 devices."""
    out = {}
    three = [make_batch(s, 8, 4, [(i + s) % 5 for i in range(8)]) for s in range(3)]
    params, _, _ = run(three, [0.008, 0.03, 0.064])
    out.update({f"three_steps/{k}": v for k, v in params.items()})
    params, _, _ = run(three, [0.008, 0.03, 0.064], folded_convs=True)
    out.update({f"folded_three_steps/{k}": v for k, v in params.items()})
    sixteen = [make_batch(10 + s, 16, 4, [(i + s) % 5 for i in range(16)]) for s in range(2)]
    for accum in (1, 2):
        params, _, _ = run(sixteen, [0.03, 0.064], grad_accum_steps=accum)
        out.update({f"accum{accum}/{k}": v for k, v in params.items()})
    scale = make_batch(7, 8, 4, [1, 0, 0, 0, 0, 3, 0, 0])          # 2 clips with real RoIs: 1 and 3
    params, _, _ = run([scale], [1.0], tx=sgd(momentum=0.0, nesterov=False, weight_decay=0.0))
    out.update({f"loss_scale/{k}": v for k, v in params.items()})
    return out




def detector_three_steps() -> dict[str, np.ndarray]:
    """3 steps of the real tiny detector (configs/default.py, HR2O dropout off so device count cannot matter)
    with the real loss, batch 8 of [8, 64, 80, 3] clips."""
    from acar_jax.models.detector import create_model  # noqa: PLC0415
    from acar_jax.training.loop import config_roi_loss  # noqa: PLC0415
    from configs import default  # noqa: PLC0415

    config = default.get_config()
    config.model.head.hr2o_dropout = 0.0
    # The reference's SGD: its update is linear in the gradient, so 1e-5 on parameters checks the gradient
    # reduction. Adam (the default job's) divides by sqrt(v), which turns round-off in near-zero gradients (a
    # different summation order over devices) into lr-sized steps: measured 7e-5 on a BN bias after 3 steps.
    config.train.optimizer.name = "sgd"
    mesh = parallel.make_mesh()
    tx = optim.gradient_transformation(config.train.optimizer)
    graphdef, rng_state, state = train_state.create_train_state(create_model(config), tx)
    state, rng_state = parallel.replicate(state, mesh), parallel.replicate(rng_state, mesh)
    step = train_step.make_train_step(graphdef, tx, mesh, roi_loss_fn=config_roi_loss(config))
    rng = np.random.default_rng(0)
    for s in range(3):
        batch = make_batch(s, 8, 8, [(i + s) % 6 for i in range(8)])
        batch["clips"] = rng.normal(size=(8, 8, 64, 80, 3)).astype(np.float32)
        batch["valid_hw"] = np.tile(np.array([[64, 80]], np.int32), (8, 1))
        batch["labels"] = np.where(batch["box_mask"][..., None], rng.integers(0, 2, size=(8, 8, 9)), 0
                                   ).astype(np.float32)
        state, _ = step(state, rng_state, parallel.shard_batch(batch, mesh, TRAIN_KEYS),
                        jnp.float32([0.008, 0.03, 0.064][s]))
    return flat(state.params)


def two_process_main(pid: int, port: str, out: str) -> None:
    """Process `pid` of a 2-process CPU run (1 device each, gloo): 3 steps, each process feeding its half of
    every global batch; process 0 writes the final params to `out`."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    three = [make_batch(s, 8, 4, [(i + s) % 5 for i in range(8)]) for s in range(3)]
    local = [{k: v[pid * 4:(pid + 1) * 4] for k, v in b.items()} for b in three]
    params, _, _ = run(local, [0.008, 0.03, 0.064])
    if pid == 0:
        np.savez(out, **params)


if __name__ == "__main__":
    if sys.argv[1] == "--process":
        two_process_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "--detector":
        np.savez(sys.argv[2], num_devices=jax.device_count(), **detector_three_steps())
    else:
        np.savez(sys.argv[1], num_devices=jax.device_count(), **scenarios())


def write_initial_checkpoint(config: ml_collections.ConfigDict, workdir: str, seed: int = 3) -> None:
    """A run's workdir whose checkpoint holds config's detector at its initialisation (seeded)."""
    from acar_jax.models.detector import create_model  # noqa: PLC0415
    from acar_jax.state import checkpoints  # noqa: PLC0415
    _, _, state = train_state.create_train_state(create_model(config, seed=seed),
                                                optim.gradient_transformation(config.train.optimizer))
    ckpt = checkpoints.Checkpointer(workdir, every_steps=1, max_to_keep=1)
    ckpt.save(state, force=True)
    ckpt.close()
