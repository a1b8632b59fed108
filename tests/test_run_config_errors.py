"""run.py refuses a config typo and an unknown config file with one clear line; a checkpoint of another model
shape is refused naming the parameter and both shapes."""

import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from acar_jax.state import checkpoints, train_state
from acar_jax.training import optim
from tests.helpers import paths
from tests.helpers import tiny_models as h

REPO = str(paths.REPO)


def _run(*args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    return proc.returncode, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def test_config_override_typo_names_the_field_and_its_siblings():
    code, last = _run("--config.train.optimizer.lr_typo=1")
    assert code == 1
    assert last.startswith("--config.train.optimizer.lr_typo: config.train.optimizer has no field 'lr_typo'")
    assert "'momentum', 'name', 'nesterov', 'weight_decay'" in last


def test_config_typo_in_a_section_name():
    code, last = _run("--config.trian.batch_size=2")
    assert code == 1 and "config has no field 'trian'" in last


def test_unknown_config_file_is_named():
    code, last = _run("--config=configs/no_such_config.py")
    assert code == 1
    assert last.startswith("--config=configs/no_such_config.py: no such config file")


def _state(num_classes):
    model = h.TinyDetector(rngs=nnx.Rngs(params=0, dropout=1), num_classes=num_classes)
    tx = optim.gradient_transformation(_opt())
    return train_state.create_train_state(model, tx)[2]


def _opt():
    import ml_collections  # noqa: PLC0415

    return ml_collections.ConfigDict(dict(name="sgd", momentum=0.9, nesterov=True, weight_decay=1e-7))


def test_checkpoint_of_another_model_shape_names_the_parameter(tmp_path):
    ckpt = checkpoints.Checkpointer(str(tmp_path), every_steps=1, max_to_keep=1)
    ckpt.save(_state(5), force=True)
    ckpt.wait()
    with pytest.raises(ValueError, match=r"checkpoints/0: parameter head/fc/bias has shape \(5,\) in the checkpoint "
                                         r"but the model expects \(7,\)"):
        ckpt.restore(_state(7))
    ckpt.close()


def test_init_from_backbone_takes_only_the_backbone(tmp_path):
    src = _state(5)
    src = src.replace(params=jax_tree_add(src.params, 1.0))
    checkpoints.write_model_checkpoint(str(tmp_path / "pre"), src.params, src.batch_stats)
    fresh = _state(7)                                  # another head shape: fine for scope "backbone"
    got = checkpoints.init_from(fresh, str(tmp_path / "pre"), scope="backbone")
    np.testing.assert_array_equal(np.asarray(got.params["backbone"]["conv"]["kernel"][...]),
                                  np.asarray(src.params["backbone"]["conv"]["kernel"][...]))
    np.testing.assert_array_equal(np.asarray(got.params["head"]["fc"]["kernel"][...]),
                                  np.asarray(fresh.params["head"]["fc"]["kernel"][...]))
    with pytest.raises(ValueError, match="head/fc/bias has shape"):
        checkpoints.init_from(fresh, str(tmp_path / "pre"), scope="full")
    full = checkpoints.init_from(_state(5), str(tmp_path / "pre"), scope="full")
    np.testing.assert_array_equal(np.asarray(full.params["head"]["fc"]["bias"][...]),
                                  np.asarray(src.params["head"]["fc"]["bias"][...]))
    # "shared" (a bank head from its ACAR run): whatever has the checkpoint's path and shape; the rest stays fresh
    shared = checkpoints.init_from(fresh, str(tmp_path / "pre"), scope="shared")
    np.testing.assert_array_equal(np.asarray(shared.params["backbone"]["conv"]["kernel"][...]),
                                  np.asarray(src.params["backbone"]["conv"]["kernel"][...]))
    np.testing.assert_array_equal(np.asarray(shared.params["head"]["fc"]["bias"][...]),
                                  np.asarray(fresh.params["head"]["fc"]["bias"][...]))


def jax_tree_add(tree, value):
    import jax  # noqa: PLC0415

    return jax.tree.map(lambda x: x + value, tree)


# ---------------------------------------------------------- user errors of a real run: one line, no traceback

R50 = os.path.join(REPO, "configs", "ava_slowfast_r50_acar.py")


def _run_in(cwd, *args):
    """run.py from `cwd` (the paper config's data.root "data/ava" is relative to it); (status, stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), f"--config={R50}",
                           f"--workdir={cwd / 'run'}", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    return proc.returncode, proc.stderr


def _last_line(stderr):
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr.strip().splitlines()[-1]


def test_batch_size_that_does_not_split_is_one_line_naming_the_field(tmp_path):
    code, stderr = _run_in(tmp_path, "--config.train.batch_size=3", "--config.train.grad_accum_steps=2")
    assert code == 1
    assert _last_line(stderr).startswith("error: config.train.batch_size=3 must be a positive multiple of the "
                                         "number of devices (1) x config.train.grad_accum_steps (2) = 2")


def test_missing_data_root_is_one_line_naming_the_field(tmp_path):
    code, stderr = _run_in(tmp_path)
    assert code == 1
    assert _last_line(stderr).startswith("error: config.data.root: the dataset root 'data/ava' does not exist")


def test_missing_annotation_file_is_one_line_naming_the_field(tmp_path):
    from tests.helpers import ava_corpus  # noqa: PLC0415

    root = ava_corpus.write_corpus(tmp_path / "data" / "ava", frames=False)
    (root / ava_corpus.VAL_PROPOSALS).unlink()      # a val file: refused before training starts
    code, stderr = _run_in(tmp_path)
    last = _last_line(stderr)
    assert code == 1 and last.startswith("error: config.data.val_proposals: no such file ")
    assert ava_corpus.VAL_PROPOSALS in last and "relative to config.data.root='data/ava'" in last
