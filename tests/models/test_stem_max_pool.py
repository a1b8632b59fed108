"""The stem max pool and its hand-written gradient equal PyTorch's MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
ties included (after a ReLU most windows hold several equal zeros), and XLA's own reduce_window gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from acar_jax.models.layers import stem_max_pool


def _reduce_window_pool(x: jax.Array) -> jax.Array:
    return jax.lax.reduce_window(x, np.array(-np.inf, x.dtype), jax.lax.max, (1, 1, 3, 3, 1), (1, 1, 2, 2, 1),
                                 ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))


@pytest.mark.parametrize("shape", [(2, 3, 12, 10, 4), (1, 2, 7, 9, 3), (1, 1, 1, 2, 2), (1, 1, 2, 1, 1),
                                   (1, 2, 5, 6, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_stem_max_pool_matches_torch_and_reduce_window(shape, ties):
    rng = np.random.default_rng(sum(shape) + ties)
    x = rng.standard_normal(shape).astype(np.float32)
    if ties:
        x = np.maximum(x, 0).round(0)   # mostly zeros and ones: many windows with several maxima
    out_shape = (*shape[:2], (shape[2] - 1) // 2 + 1, (shape[3] - 1) // 2 + 1, shape[4])
    dy = rng.standard_normal(out_shape).astype(np.float32)

    out, vjp = jax.vjp(stem_max_pool, jnp.asarray(x))
    (dx,) = vjp(jnp.asarray(dy))

    x_t = torch.tensor(x).permute(0, 4, 1, 2, 3).requires_grad_()
    out_t = torch.nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))(x_t)
    out_t.backward(torch.tensor(dy).permute(0, 4, 1, 2, 3))
    np.testing.assert_array_equal(np.asarray(out), out_t.detach().permute(0, 2, 3, 4, 1).numpy())
    np.testing.assert_allclose(np.asarray(dx), x_t.grad.permute(0, 2, 3, 4, 1).numpy(), atol=1e-6)

    (dx_xla,) = jax.vjp(_reduce_window_pool, jnp.asarray(x))[1](jnp.asarray(dy))
    np.testing.assert_array_equal(np.asarray(dx), np.asarray(dx_xla))   # same sums in the same (window) order


def test_stem_max_pool_gradient_under_jit_equals_reduce_window():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 8, 8, 3)), jnp.float32)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(stem_max_pool(v) ** 2)))(x)
    expected = jax.grad(lambda v: jnp.sum(_reduce_window_pool(v) ** 2))(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), atol=1e-6)


def test_stem_max_pool_bfloat16_gradient_under_remat_equals_reduce_window():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 2, 9, 11, 5)), jnp.bfloat16)
    loss = lambda pool: jax.checkpoint(lambda v: jnp.sum(pool(jax.nn.relu(v)).astype(jnp.float32) ** 2))  # noqa: E731
    grad = jax.jit(jax.grad(loss(stem_max_pool)))(x)
    expected = jax.jit(jax.grad(loss(_reduce_window_pool)))(x)
    assert grad.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(grad, np.float32), np.asarray(expected, np.float32))
