"""The sharded train step: 8 devices == 1 device, the reference's loss scale, skipped empty batches,
gradient accumulation, frozen statistics, exact dropout keys and the non-finite stop (stand-in detector)."""

import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from acar_jax.core import parallel
from acar_jax.training import train_step
from tests.helpers import paths
from tests.helpers import tiny_models as h

REPO = str(paths.REPO)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    """scenarios() run on 8 fake CPU devices in a subprocess."""
    out = tmp_path_factory.mktemp("eight") / "scenarios.npz"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-m", "tests.helpers.tiny_models", str(out)], cwd=REPO, env=env, check=True,
                   timeout=600)
    data = np.load(out)
    assert int(data["num_devices"]) == 8
    return {k: data[k] for k in data.files if k != "num_devices"}


@pytest.fixture(scope="module")
def one_device():
    return h.scenarios()


def test_eight_devices_equal_one_device_after_three_steps(eight_devices, one_device):
    keys = [k for k in one_device if k.startswith("three_steps/")]
    assert keys
    moved = False
    for k in keys:
        np.testing.assert_allclose(eight_devices[k], one_device[k], rtol=1e-5, atol=1e-5, err_msg=k)
        moved |= not np.allclose(one_device[k], h.flat(nnx.state(h.TinyDetector(rngs=nnx.Rngs(params=0, dropout=1)),
                                                                  nnx.Param))[k.split("/", 1)[1]])
    assert moved


def test_folded_convs_eight_devices_equal_one_device_after_three_steps(eight_devices, one_device):
    """The library's folded Conv3d (a 3x3x3 stem with the per-row kernel gradient; a dilated, rematerialised
    1x3x3 with the per-tap one) inside the sharded step: 8 devices == 1 device, and the convolutions did train."""
    keys = [k for k in one_device if k.startswith("folded_three_steps/")]
    initial = h.flat(nnx.state(h.TinyDetector(rngs=nnx.Rngs(params=0, dropout=1), folded_convs=True), nnx.Param))
    assert {k.split("/", 1)[1] for k in keys} == set(initial)
    for k in keys:
        np.testing.assert_allclose(eight_devices[k], one_device[k], rtol=1e-5, atol=1e-5, err_msg=k)
    for name in ("backbone/conv1/kernel", "backbone/conv2/kernel"):
        assert not np.allclose(one_device["folded_three_steps/" + name], initial[name]), name


def _direct_mean_gradient(batch, clips_idx):
    """Gradient of the mean of the per-RoI losses over the real RoIs of the given clips, computed directly."""
    model = h.TinyDetector(rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    sub = {k: v[clips_idx] for k, v in batch.items()}

    def loss(p):
        m = nnx.merge(graphdef, p, rest)
        per_roi = h.roi_bce(m(sub["clips"], sub["boxes"], sub["box_mask"], sub["valid_hw"], train=True),
                            sub["labels"], sub["box_mask"])
        return per_roi[sub["box_mask"]].mean()

    return params, jax.grad(loss)(params)


@pytest.mark.parametrize("devices", [1, 8])
def test_loss_scale_is_the_mean_over_the_global_real_rois(devices, eight_devices):
    """One step (plain SGD, lr 1) on clips with 1 and 3 real RoIs: p0 - p1 == grad of the mean over the 4 RoIs."""
    batch = h.make_batch(7, 8, 4, [1, 0, 0, 0, 0, 3, 0, 0])
    params0, grads = _direct_mean_gradient(batch, np.array([0, 5]))
    if devices == 1:   # exactly 2 clips on one device
        two = {k: v[np.array([0, 5])] for k, v in batch.items()}
        new, _, _ = h.run([two], [1.0], tx=h.sgd(momentum=0.0, nesterov=False, weight_decay=0.0))
    else:
        new = {k.split("/", 1)[1]: v for k, v in eight_devices.items() if k.startswith("loss_scale/")}
    p0, g = h.flat(params0), h.flat(grads)
    for k in p0:
        np.testing.assert_allclose(p0[k] - new[k], g[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_gradient_accumulation_equals_one_big_batch(one_device, eight_devices):
    for k in one_device:
        if k.startswith("accum2/"):
            np.testing.assert_allclose(one_device[k], one_device["accum1/" + k.split("/", 1)[1]],
                                       rtol=1e-5, atol=1e-6, err_msg=k)
            np.testing.assert_allclose(eight_devices[k], one_device[k], rtol=1e-5, atol=1e-5, err_msg=k)


def test_batch_without_real_rois_skips_the_update():
    first = h.make_batch(0, 2, 4, [2, 3])
    empty = h.make_batch(1, 2, 4, [0, 0])
    _, _, s1 = h.run([first], [0.01])
    p2, metrics, s2 = h.run([first, empty], [0.01, 0.01])
    assert int(s2.step) == 2 and metrics[1]["applied"] == 0 and metrics[1]["num_rois"] == 0
    for (k, a), b in zip(h.flat(s1.params).items(), p2.values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
    for a, b in zip(jax.tree.leaves(s1.opt_state), jax.tree.leaves(s2.opt_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_frozen_statistics_are_not_trained_and_dropout_is_exactly_repeatable():
    batches = [h.make_batch(s, 2, 4, [2, 3]) for s in range(2)]
    p_a, _, s_a = h.run(batches, [0.05, 0.05], dropout=0.5)
    p_b, _, _ = h.run(batches, [0.05, 0.05], dropout=0.5)
    p_c, _, _ = h.run(batches, [0.05, 0.05], dropout=0.0)
    for k in p_a:
        np.testing.assert_array_equal(p_a[k], p_b[k], err_msg=k)
    assert any(not np.allclose(p_a[k], p_c[k]) for k in p_a)      # the masks did act
    np.testing.assert_array_equal(np.asarray(s_a.batch_stats["backbone"]["mean"][...]), np.full((3,), 0.1, np.float32))


def test_non_finite_loss_stops_with_the_step_and_keeps_the_params():
    bad = h.make_batch(0, 2, 4, [2, 3])
    bad["clips"][0, 0, 0, 0, 0] = np.nan
    good = h.make_batch(1, 2, 4, [2, 3])
    _, metrics, state = h.run([good, bad], [0.01, 0.01])
    train_step.check_finite(metrics[0], step=0)
    with pytest.raises(train_step.NonFiniteLossError, match="step 1: non-finite loss"):
        train_step.check_finite(metrics[1], step=1)
    _, _, s1 = h.run([good], [0.01])
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_batch_that_does_not_split_over_devices_is_named():
    with pytest.raises(parallel.BatchSizeError, match=r"^config.train.batch_size=6 must be a positive multiple "
                                                        r"of the number of devices \(4\) .* = 4; e.g. "
                                                        r"--config.train.batch_size=4 "):
        parallel.check_batch_size(6, 4, 1)
    parallel.check_batch_size(8, 4, 2)
    assert jnp.zeros(()).dtype == jnp.float32


def test_two_processes_equal_one_process(one_device, tmp_path):
    """Multi-host: 2 JAX processes (CPU, gloo), each feeding its half of every global batch, give the
    single-process parameters after 3 steps (1e-5)."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    out = tmp_path / "params.npz"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, "-m", "tests.helpers.tiny_models", "--process", str(pid), port,
                               str(out)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    got = np.load(out)
    for k in got.files:
        np.testing.assert_allclose(got[k], one_device["three_steps/" + k], rtol=1e-5, atol=1e-5, err_msg=k)


@pytest.mark.slow
def test_real_detector_on_eight_devices_equals_one_device(tmp_path):
    """The tiny ACAR detector (configs/default.py) with the real loss: 8 fake CPU devices == 1 device after
    3 steps (1e-5)."""
    out = tmp_path / "eight.npz"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-m", "tests.helpers.tiny_models", "--detector", str(out)], cwd=REPO, env=env,
                   check=True, timeout=900)
    eight = np.load(out)
    assert int(eight["num_devices"]) == 8
    one = h.detector_three_steps()
    for k, v in one.items():
        np.testing.assert_allclose(eight[k], v, rtol=1e-5, atol=1e-5, err_msg=k)
