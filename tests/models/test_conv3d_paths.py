"""config.model.conv3d: the native 3-D convolution and the time-folded form compute the same function and the
same gradients (1e-5) on the tiny SlowFast, and "auto" resolves by backend."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from acar_jax.models.layers import Conv3d, resolve_conv3d
from acar_jax.models.slowfast import SlowFast
from configs.default import get_config


def test_auto_resolves_by_backend_and_unknown_paths_are_named():
    assert resolve_conv3d("auto", backend="cpu") == "folded"
    assert resolve_conv3d("auto", backend="gpu") == "native"
    assert resolve_conv3d("auto", backend="tpu") == "native"
    assert resolve_conv3d("native", backend="cpu") == "native"
    with pytest.raises(ValueError, match="model.conv3d must be one of"):
        resolve_conv3d("3d")


@pytest.mark.parametrize("kwargs", [dict(kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3)),
                                    dict(kernel_size=(7, 1, 1), stride=(4, 1, 1), padding=(3, 0, 0)),
                                    dict(kernel_size=(1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2)),
                                    dict(kernel_size=(3, 1, 1), padding=(1, 0, 0)),
                                    dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                                    dict(kernel_size=1, stride=(1, 2, 2)),
                                    dict(kernel_size=(3, 1, 1), stride=(2, 2, 2), padding=(1, 1, 1))])
def test_single_conv_paths_agree_with_gradients(kwargs):
    """Every kind of Conv3d the SlowFast has (fast stem, lateral fusion, dilated 1x3x3, temporal head conv, strided
    1x3x3, strided 1x1 downsample), and a padded strided 1x1 spatial kernel."""
    channels = 3 if kwargs["kernel_size"] == (5, 7, 7) else 5   # > 3: the non-stem forms of the folded path
    x = jnp.asarray(np.random.RandomState(0).randn(2, 8, 12, 10, channels).astype(np.float32))
    results = []
    for path in ("native", "folded"):
        conv = Conv3d(channels, 4, path=path, rngs=nnx.Rngs(0), **kwargs)
        graphdef, params = nnx.split(conv)

        def loss(p, x, graphdef=graphdef):
            y = nnx.merge(graphdef, p)(x)
            return jnp.sum(y * jnp.cos(y)), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        results.append((y, grads))
    (y_n, g_n), (y_f, g_f) = results
    np.testing.assert_allclose(y_n, y_f, atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_n), jax.tree.leaves(g_f), strict=True):   # 1e-5 of the gradient's scale:
        scale = max(float(jnp.max(jnp.abs(a))), 1.0)                            # sums of ~500 products each
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-5)


@pytest.mark.slow   # two gradient programs of the whole backbone: ~30 s on an idle 2-core CPU
def test_tiny_slowfast_outputs_and_gradients_agree():
    cfg = get_config().model.backbone
    clips = jnp.asarray(np.random.RandomState(1).randn(1, 8, 32, 32, 3).astype(np.float32))
    results = {}
    for path in ("native", "folded"):
        model = SlowFast(cfg, conv3d=path, rngs=nnx.Rngs(0))
        assert {m.path for _, m in nnx.iter_graph(model) if isinstance(m, Conv3d)} == {path}
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(p, graphdef=graphdef, rest=rest):
            slow, fast = nnx.merge(graphdef, p, rest)(clips)
            return jnp.sum(slow * jnp.cos(slow)) + jnp.sum(fast * jnp.sin(fast)), (slow, fast)

        (_, outs), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results[path] = (outs, grads)
    (outs_n, grads_n), (outs_f, grads_f) = results["native"], results["folded"]
    for a, b in zip(outs_n, outs_f, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    leaves_n, leaves_f = jax.tree.leaves(grads_n), jax.tree.leaves(grads_f)
    assert len(leaves_n) == len(leaves_f) > 0
    for a, b in zip(leaves_n, leaves_f, strict=True):
        scale = max(float(jnp.max(jnp.abs(a))), 1.0)
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-5)
