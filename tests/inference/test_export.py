"""acar_jax.inference.export.serving / tools/export.py: the jax.export artifact, run by its standalone loader in a
fresh process without acar_jax, gives api.load_model(...).predict's scores; a clip size the model cannot take is refused
naming the argument."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from acar_jax import api
from acar_jax.inference.export import serving
from tests.helpers import configs, paths
from tests.helpers import tiny_models as h

REPO = str(paths.REPO)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A workdir holding a checkpoint of the default (tiny SlowFast + ACAR) model at its initialisation."""
    config = configs.small_detector()
    workdir = str(tmp_path_factory.mktemp("run"))
    h.write_initial_checkpoint(config, workdir)
    return config, workdir


def test_artifact_in_a_fresh_process_without_acar_jax_equals_predict(tiny_run, tmp_path):
    config, workdir = tiny_run
    model = api.load_model(config, workdir)
    exported = serving.export_model(model, batch=None, frames=8, height=64, width=96, max_boxes=4)
    out = tmp_path / "model_dir"
    serving.write_artifact(exported, str(out), serving.signature_of(model, exported, range(1, 10),
                                                                    [f"c{i}" for i in range(1, 10)]))
    inputs = serving.random_inputs(exported, batch=3, seed=1)
    inputs["valid_hw"][1] = (48, 80)            # a padded clip: the box frame rule must travel too
    np.savez(tmp_path / "inputs.npz", **inputs)
    probe = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
             "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('acar_jax', 'data_pipelines', 'flax'));"
             "assert not leaked, leaked; print('clean')")
    proc = subprocess.run([sys.executable, "-c", probe, str(out / serving.LOADER_NAME), str(out),
                           str(tmp_path / "inputs.npz"), str(tmp_path / "scores.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": "", "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]
    got = np.load(tmp_path / "scores.npy")
    want = np.asarray(model.predict(*(inputs[k] for k in ("clips", "boxes", "box_mask", "valid_hw"))))
    assert got.shape == (3, 4, 9)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    signature = json.loads((out / serving.SIGNATURE).read_text())
    assert signature["inputs"]["clips"]["shape"] == ["b", "8", "64", "96", "3"]
    assert len((out / serving.LOADER_NAME).read_text().splitlines()) <= 30


def test_export_refuses_bad_arguments(tiny_run):
    config, workdir = tiny_run
    model = api.load_model(config, workdir)
    with pytest.raises(ValueError, match="--platforms"):
        serving.export_model(model, batch=1, frames=8, height=64, width=64, max_boxes=2, platforms=("gpu",))
    with pytest.raises(ValueError, match="--max_boxes: expected a positive size"):
        serving.export_model(model, batch=1, frames=8, height=64, width=64, max_boxes=0)


def test_cli_refuses_a_clip_too_small_for_the_acar_head(tiny_run, tmp_path):
    """32 px: a 2x2 feature map, under the ACAR head's 3x3 conv. Exit 1, the arguments named, no traceback."""
    _, workdir = tiny_run
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"),
                           f"--config={os.path.join(REPO, 'configs', 'default.py')}", f"--workdir={workdir}",
                           f"--output={tmp_path / 'out'}", "--height=32", "--width=64",
                           "--config.model.backbone.width=8", "--config.model.head.reduce_dim=16",
                           "--config.model.head.hidden_dim=8"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--height 32 --width 64: the model cannot take clips of this shape" in proc.stderr
    assert "3x3" in proc.stderr or "3 x 3" in proc.stderr or "feature" in proc.stderr, proc.stderr[-600:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow     # two TensorFlow imports, a jax2tf conversion and TF's XLA compile: over 20 s on 2 cores
def test_saved_model_in_a_fresh_process_with_tensorflow_alone_equals_predict(tiny_run, tmp_path):
    """jax2tf's SavedModel (weights as variables, any batch), run by its loader with TensorFlow and numpy only
    (jax, jaxlib, flax and acar_jax cannot be imported there: `import tensorflow` itself tries jax, for TFLite,
    and goes on without it), gives predict's scores."""
    from acar_jax.inference.export import saved_model  # noqa: PLC0415 (TensorFlow only in this test)
    config, workdir = tiny_run
    model = api.load_model(config, workdir)
    out = tmp_path / "model_dir"
    paths = saved_model.write_saved_model(model, str(out), batch=None, frames=8, height=64, width=96, max_boxes=4)
    assert paths == [str(out / "saved_model"), str(out / saved_model.LOADER_NAME)]
    assert list((out / "saved_model" / "variables").glob("variables.data-*"))     # weights as variables
    inputs = serving.random_inputs(serving.input_specs(batch=None, frames=8, height=64, width=96, max_boxes=4),
                                   batch=3, seed=2)
    inputs["valid_hw"][2] = (40, 96)
    np.savez(tmp_path / "inputs.npz", **inputs)
    probe = ("import runpy, sys\n"
             "class Blocked:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('acar_jax', 'jax', 'jaxlib', 'flax'):\n"
             "            raise ImportError(f'{name} is blocked in this test')\n"
             "sys.meta_path.insert(0, Blocked())\n"
             "sys.argv = sys.argv[1:]\n"
             "runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('acar_jax', 'jax', 'jaxlib', 'flax'))\n"
             "assert not leaked, leaked\n"
             "print('clean')\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(out / saved_model.LOADER_NAME), str(out),
                           str(tmp_path / "inputs.npz"), str(tmp_path / "scores.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]
    got = np.load(tmp_path / "scores.npy")
    want = np.asarray(model.predict(*(inputs[k] for k in serving.INPUT_NAMES)))
    assert got.shape == (3, 4, 9)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # another batch size through the same signature
    two = {k: v[:2] for k, v in inputs.items()}
    np.testing.assert_allclose(saved_model.run_saved_model(str(out), two), want[:2], atol=1e-5, rtol=0)


def test_cli_refuses_an_unknown_format(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"),
                           f"--config={os.path.join(REPO, 'configs', 'default.py')}", f"--workdir={tmp_path}",
                           f"--output={tmp_path / 'out'}", "--height=64", "--width=64", "--format=jax,onnx"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--format: expected a comma-separated subset of jax, savedmodel, got jax,onnx" in proc.stderr
    assert not (tmp_path / "out").exists()
