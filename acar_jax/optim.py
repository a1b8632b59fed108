"""SGD with (Nesterov) momentum and L2 weight decay, with PyTorch `torch.optim.SGD` semantics.

PyTorch adds `weight_decay * p` to the gradient before the momentum buffer (`buf = momentum * buf + g`, the first
buffer is `g`; Nesterov direction `g + momentum * buf`) and then steps `p -= lr * direction`. optax's
`add_decayed_weights` + `trace` compute the same direction (a zero-initialised trace gives `buf = g` on the first
step). The rate is applied outside the transformation (`apply_updates`), because the reference indexes its
schedule by the global iteration, including iterations whose update is skipped (no real RoI), while an optax
count would not advance on those.
"""

from __future__ import annotations

import jax
import ml_collections
import optax


def sgd_direction(optimizer_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The update direction (before the learning rate) of config.train.optimizer."""
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
