"""SGD (Nesterov momentum 0.9, L2 weight decay) equals torch.optim.SGD step by step (oracle: torch, tol 1e-6)."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch  # noqa: E402

from acar_jax.training import optim


def _config(momentum=0.9, nesterov=True, weight_decay=1e-7):
    return ml_collections.ConfigDict(dict(name="sgd", momentum=momentum, nesterov=nesterov,
                                          weight_decay=weight_decay))


def _step_both(tx, opt, tp, p0, grads, lrs, *, rtol: float) -> None:
    """Steps the torch optimiser and `p - lr * direction` with the same gradients and rates; equal every step."""
    params = {k: jnp.asarray(v) for k, v in p0.items()}
    state = tx.init(params)
    for g, lr in zip(grads, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        direction, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optim.apply_updates(params, direction, jnp.float32(lr))
        for k in p0:
            np.testing.assert_allclose(np.asarray(params[k]), tp[k].detach().numpy(), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.9, True, 1e-7), (0.9, False, 1e-2),
                                                              (0.9, True, 1e-2), (0.0, False, 1e-3)])
def test_matches_torch_sgd(momentum, nesterov, weight_decay):
    rng = np.random.default_rng(0)
    p0 = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=(3,)).astype(np.float32)}
    grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(5)]
    lrs = [0.008, 0.0136, 0.064, 0.064, 0.0064]

    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in p0.items()}
    opt = torch.optim.SGD(list(tp.values()), lr=lrs[0], momentum=momentum, nesterov=nesterov,
                          weight_decay=weight_decay)
    tx = optim.gradient_transformation(_config(momentum, nesterov, weight_decay))
    _step_both(tx, opt, tp, p0, grads, lrs, rtol=1e-6)


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        optim.gradient_transformation(_config(momentum=0.0, nesterov=True))


def test_adamw_direction_equals_torch_adamw():
    """optimizer.name = adamw: p - lr * direction equals torch.optim.AdamW (decoupled decay) at varying lr."""
    rng = np.random.default_rng(1)
    p0 = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=(3,)).astype(np.float32)}
    grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(5)]
    lrs = [1e-4, 5e-4, 1e-3, 1e-3, 1e-4]
    config = ml_collections.ConfigDict(dict(name="adamw", momentum=0.9, nesterov=True, weight_decay=1e-2,
                                            b1=0.9, b2=0.99, eps=1e-8))
    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in p0.items()}
    opt = torch.optim.AdamW(list(tp.values()), lr=lrs[0], betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-2)
    tx = optim.gradient_transformation(config)
    _step_both(tx, opt, tp, p0, grads, lrs, rtol=1e-5)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match=r"train.optimizer.name: expected one of \('sgd', 'adamw'\), got 'adam'"):
        optim.gradient_transformation(ml_collections.ConfigDict(dict(name="adam", weight_decay=0.0)))
