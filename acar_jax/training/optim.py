"""SGD with (Nesterov) momentum and L2 weight decay, with PyTorch `torch.optim.SGD` semantics.

PyTorch adds `weight_decay * p` to the gradient before the momentum buffer (`buf = momentum * buf + g`, the first
buffer is `g`; Nesterov direction `g + momentum * buf`) and then steps `p -= lr * direction`. optax's
`add_decayed_weights` + `trace` compute the same direction (a zero-initialised trace gives `buf = g` on the first
step). The rate is applied outside the transformation (`apply_updates`), because the reference indexes its
schedule by the global iteration, including iterations whose update is skipped (no real RoI), while an optax
count would not advance on those.

`optimizer.name = "adamw"` swaps the direction for Adam's (decoupled weight decay, as `optax.adamw`): not the
reference's recipe, which fine-tunes a Kinetics backbone with SGD, but what trains a from-scratch network with
frozen (identity) BatchNorm in a few hundred steps, e.g. the synthetic default job.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adamw")


def gradient_transformation(optimizer_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The update direction (before the learning rate) of config.train.optimizer: SGD's or AdamW's."""
    name = optimizer_config.name
    if name == "sgd":
        return _sgd(optimizer_config)
    if name == "adamw":
        weight_decay = float(optimizer_config.weight_decay)
        if weight_decay < 0:
            raise ValueError(f"train.optimizer.weight_decay: must be >= 0, got {weight_decay}")
        adam = optax.scale_by_adam(b1=float(optimizer_config.b1), b2=float(optimizer_config.b2),
                                   eps=float(optimizer_config.eps))
        return optax.chain(adam, optax.add_decayed_weights(weight_decay)) if weight_decay else adam
    raise ValueError(f"train.optimizer.name: expected one of {OPTIMIZERS}, got {name!r}")


def _sgd(optimizer_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD's update direction (before the learning rate): PyTorch's momentum, Nesterov and L2 semantics."""
    momentum = float(optimizer_config.momentum)
    weight_decay = float(optimizer_config.weight_decay)
    if momentum < 0 or weight_decay < 0:
        raise ValueError(f"train.optimizer: momentum ({momentum}) and weight_decay ({weight_decay}) must be >= 0")
    if bool(optimizer_config.nesterov) and momentum == 0:
        raise ValueError("train.optimizer: nesterov needs momentum > 0 (as torch.optim.SGD)")
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    if momentum:
        parts.append(optax.trace(decay=momentum, nesterov=bool(optimizer_config.nesterov)))
    return optax.chain(*parts) if parts else optax.identity()


def apply_updates(params, direction, lr: jax.Array):
    """`p - lr * direction` leaf by leaf, in the parameter dtype."""
    return jax.tree.map(lambda p, d: (p - lr.astype(p.dtype) * d.astype(p.dtype)).astype(p.dtype), params,
                        direction)
