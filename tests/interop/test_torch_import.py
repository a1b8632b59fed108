"""PyTorch weight import (acar_jax/interop/torch_import.py): naming schemes, strictness, safe loading.

Oracles: `tests/parity/torch_slowfast.py` (the reference SlowFast with its exact attribute names, random
weights and BN statistics) and `tests/parity/torch_reference_names.py` (the key layouts of ACAR-Net training,
model-zoo and Kinetics-pretrained files, and of PySlowFast `.pyth` files). Features are compared to the
oracle's with 1e-4 max abs tolerance (tiny config, outputs O(1..10)).
"""

from __future__ import annotations

import os
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from acar_jax.interop import torch_import as ti  # noqa: E402
from acar_jax.interop.torch_reference import reference_names as names  # noqa: E402
from acar_jax.interop.torch_reference import slowfast as sf_oracle  # noqa: E402
from acar_jax.models.slowfast import SlowFast  # noqa: E402
from configs.default import get_config  # noqa: E402
from tests.helpers import paths  # noqa: E402

ATOL = 1e-4


def tiny_backbone_config(**overrides):
    cfg = get_config().model.backbone
    cfg.update(overrides)
    return cfg


class BackboneOnly(nnx.Module):
    """The backbone subtree of the detector (`backbone/...` paths), for tests that need no head."""

    def __init__(self, cfg, rngs: nnx.Rngs):
        self.backbone = SlowFast(cfg, rngs=rngs)


def abstract_backbone(cfg) -> BackboneOnly:
    return nnx.eval_shape(lambda: BackboneOnly(cfg, nnx.Rngs(0)))


def torch_backbone(cfg, seed: int = 0):
    return sf_oracle.randomize_(sf_oracle.from_backbone_config(cfg), seed)


def save_and_load(tmp_path, obj, name="ckpt.pth") -> tuple[dict, str]:
    path = str(tmp_path / name)
    torch.save(obj, path)
    return ti.load_torch_file(path)


def assert_features_equal(torch_model, flax_model, cfg, seed: int = 1) -> None:
    clips = np.random.RandomState(seed).randn(1, cfg_frames(cfg), 32, 48, 3).astype(np.float32)
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))
    ours = nnx.jit(lambda m, x: m.backbone(x))(flax_model, jnp.asarray(clips))
    for r, o, name in zip(ref, ours, ("slow", "fast"), strict=True):
        r = r.permute(0, 2, 3, 4, 1).numpy()
        err = float(np.max(np.abs(r - np.asarray(o))))
        print(f"{name}: max abs err {err:.2e} (max |x| {np.max(np.abs(r)):.2f})")
        assert err < ATOL, f"{name} features differ by {err}"


def cfg_frames(cfg) -> int:
    return 2 * int(cfg.alpha)


@pytest.mark.parametrize("form", ["kinetics_bare", "pyslowfast"])
def test_backbone_import_equals_oracle_features(tmp_path, form):
    """A Kinetics backbone file (reference naming + `fc`) and a PySlowFast `.pyth` (model_state +
    head.projection) give the oracle's features exactly; the classifier is reported, nothing else is
    left over."""
    cfg = tiny_backbone_config()
    oracle = torch_backbone(cfg)
    if form == "kinetics_bare":
        obj, classifier = names.kinetics_backbone_file(oracle), ["fc.bias", "fc.weight"]
    else:
        obj = names.pyslowfast_checkpoint(oracle)
        classifier = ["head.projection.bias", "head.projection.weight"]
    source, container = save_and_load(tmp_path, obj)
    model = abstract_backbone(cfg)
    report = ti.import_into(model, source, allow_unused=("classifier",), container=container)
    assert report.scheme == ("pyslowfast" if form == "pyslowfast" else "acar")
    assert report.container == ("model_state" if form == "pyslowfast" else "flat")
    assert sorted(report.unused["classifier"]) == classifier
    assert not report.missing
    n_bn = sum(isinstance(m, torch.nn.BatchNorm3d) for m in oracle.modules())
    assert len(report.ignored) == n_bn
    assert len(report.loaded) == len(oracle.state_dict()) - n_bn
    assert "head.projection.weight" in report.format() or "fc.weight" in report.format()
    assert_features_equal(oracle, model, cfg)


def test_classifier_keys_refused_without_allow_unused(tmp_path):
    """Strict by default: the Kinetics classifier must be released explicitly, and the error names its key."""
    cfg = tiny_backbone_config()
    source, _ = save_and_load(tmp_path, names.pyslowfast_checkpoint(torch_backbone(cfg)))
    with pytest.raises(ti.CheckpointImportError,
                       match=r"head\.projection\.weight.*--allow_unused=classifier"):
        ti.import_into(abstract_backbone(cfg), source)


def test_pyslowfast_into_conv_only_fusion_fails_naming_keys(tmp_path):
    """PySlowFast fusion is conv + BN + ReLU (kernel 7 in its R50): a conv-only kernel-5 model gets errors
    naming each key."""
    src_cfg = tiny_backbone_config()
    source, _ = save_and_load(tmp_path, names.pyslowfast_checkpoint(torch_backbone(src_cfg)))
    dst_cfg = tiny_backbone_config(fuse_only_conv=True, fuse_kernel_size=5)
    with pytest.raises(ti.CheckpointImportError) as err:
        ti.import_into(abstract_backbone(dst_cfg), source, allow_unused=("classifier",))
    msg = str(err.value)
    print(msg)
    assert "shape mismatch: key 's1_fuse.conv_f2s.weight'" in msg
    assert "unused key 's1_fuse.bn.weight'" in msg


def test_unknown_pyslowfast_block_is_an_error(tmp_path):
    """A PySlowFast part with no counterpart (a non-local block) is never silently dropped."""
    cfg = tiny_backbone_config()
    obj = names.pyslowfast_checkpoint(torch_backbone(cfg))
    obj["model_state"]["s3.pathway0_nonlocal1.conv_theta.weight"] = torch.zeros(2, 2, 1, 1, 1)
    source, _ = save_and_load(tmp_path, obj)
    with pytest.raises(ti.CheckpointImportError,
                       match=r"unused key 's3\.pathway0_nonlocal1\.conv_theta\.weight'"):
        ti.import_into(abstract_backbone(cfg), source, allow_unused=("classifier",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    """A checkpoint whose unpickling would create a marker file is refused; the marker never appears; the
    message names the opt-in flag."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "config": Payload()}, str(path))
    assert not marker.exists()
    with pytest.raises(ti.CheckpointImportError, match="--trust_pickle"):
        ti.load_torch_file(str(path))
    assert not marker.exists()

    legacy = tmp_path / "evil_legacy.pth"  # a plain (non-zip) pickle, the pre-1.6 torch format
    with open(legacy, "wb") as f:
        pickle.dump({"w": Payload()}, f, protocol=2)
    with pytest.raises(ti.CheckpointImportError, match="--trust_pickle"):
        ti.load_torch_file(str(legacy))
    assert not marker.exists()


def test_trusted_pickle_with_config_object_loads(tmp_path):
    """With trust_pickle a file that stores a (benign) config object loads; its tensors are found."""
    cfg = tiny_backbone_config()
    obj = names.training_checkpoint(names.ddp_model(torch_backbone(cfg), torch.nn.Linear(2, 2)))
    obj["config"] = _BenignConfig()
    path = str(tmp_path / "trusted.pth")
    torch.save(obj, path)
    with pytest.raises(ti.CheckpointImportError, match="--trust_pickle"):
        ti.load_torch_file(path)
    source, container = ti.load_torch_file(path, trust_pickle=True)
    assert container == "state_dict"
    assert "module.backbone.module.fast_conv1.weight" in source


class _BenignConfig:
    """A pickled object that is not a tensor or a plain container (the reference stores none; others do)."""

    lr = 0.1


def test_missing_torch_gives_clear_message(monkeypatch, tmp_path):
    """torch is only needed to read the file; without it the message says how to get it."""
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ImportError, match="pip install torch"):
        ti.load_torch_file(str(tmp_path / "x.pth"))


def test_not_a_state_dict_is_named(tmp_path):
    path = str(tmp_path / "list.pth")
    torch.save({"state_dict": {"a.weight": torch.zeros(1)}, "epoch": 1}, path)
    source, container = ti.load_torch_file(path)
    assert container == "state_dict" and list(source) == ["a.weight"]
    torch.save({"epoch": 1, "weights": [torch.zeros(1)]}, path)
    with pytest.raises(ti.CheckpointImportError, match=r"key 'epoch' holds a int"):
        ti.load_torch_file(path)


def ddp_training_source(tmp_path, cfg, **save_kwargs) -> dict:
    """A reference training checkpoint (DDP keys, `state_dict` container) of the oracle backbone."""
    torch_model = names.ddp_model(torch_backbone(cfg), torch.nn.Identity())
    source, container = save_and_load(tmp_path, names.training_checkpoint(torch_model))
    assert container == "state_dict"
    return source


def test_missing_key_is_named(tmp_path):
    cfg = tiny_backbone_config()
    source = ddp_training_source(tmp_path, cfg)
    del source["module.backbone.module.slow_res2.0.bn2.running_var"]
    with pytest.raises(ti.CheckpointImportError,
                       match=r"missing key for backbone/slow_res2/0/bn2/var.*--allow_missing=backbone"):
        ti.import_into(abstract_backbone(cfg), source)


def test_extra_key_is_named(tmp_path):
    cfg = tiny_backbone_config()
    source = ddp_training_source(tmp_path, cfg)
    source["module.backbone.module.slow_res2.0.conv4.weight"] = np.zeros((4, 4, 1, 1, 1), np.float32)
    with pytest.raises(ti.CheckpointImportError,
                       match=r"unused key 'module\.backbone\.module\.slow_res2\.0\.conv4\.weight': maps to "
                             r"backbone/slow_res2/0/conv4/kernel, which the model does not have"):
        ti.import_into(abstract_backbone(cfg), source)


def test_wrong_shape_is_named(tmp_path):
    cfg = tiny_backbone_config()
    source = ddp_training_source(tmp_path, cfg)
    key = "module.backbone.module.fast_conv1.weight"
    source[key] = source[key][:, :, :3]  # temporal kernel 3 instead of 5
    with pytest.raises(ti.CheckpointImportError,
                       match=r"shape mismatch: key 'module\.backbone\.module\.fast_conv1\.weight' has "
                             r"torch shape \(4, 3, 3, 7, 7\).*backbone/fast_conv1/kernel has shape "
                             r"\(5, 7, 7, 3, 4\)"):
        ti.import_into(abstract_backbone(cfg), source)


def test_two_keys_for_one_array_is_an_error():
    """A file with both a bare and a prefixed copy of a tensor would use one of them silently: refused."""
    source = {"module.backbone.module.fast_bn1.weight": np.ones(4, np.float32),
              "backbone.module.fast_bn1.weight": np.ones(4, np.float32)}
    with pytest.raises(ti.CheckpointImportError,
                       match=r"duplicate: keys .* both map to backbone/fast_bn1/scale"):
        ti.import_into(abstract_backbone(tiny_backbone_config()), source, allow_missing=("backbone",))


def test_wrong_depth_is_named(tmp_path):
    """A deeper checkpoint (R101-like: more res4 blocks) into a shallower config names the stage, both depths,
    the config field and a key of the extra block; the reverse names an array the checkpoint cannot fill."""
    deep, shallow = tiny_backbone_config(layers=(1, 1, 3, 1)), tiny_backbone_config()
    source = ddp_training_source(tmp_path, deep)
    with pytest.raises(ti.CheckpointImportError) as err:
        ti.import_into(abstract_backbone(shallow), source)
    msg = str(err.value)
    print(msg.splitlines()[1])
    assert ("depth mismatch at backbone/slow_res3: the checkpoint has 3 blocks, the model has 1 "
            "(model.backbone.layers) (e.g. key 'module.backbone.module.slow_res3.1.conv1.weight'") in msg
    assert "depth mismatch at backbone/fast_res3" in msg
    with pytest.raises(ti.CheckpointImportError,
                       match=r"depth mismatch at backbone/fast_res3: the checkpoint has 1 blocks, the model "
                             r"has 3 \(model.backbone.layers\) \(e.g. backbone/fast_res3/1/"):
        ti.import_into(abstract_backbone(deep), ddp_training_source(tmp_path, shallow))


# ------------------------------------------------------------------------------------ converter + consumers
# The converter writes what api.load_model, checkpoint.init_from and run.py --mode=eval restore. Until the
# detector lands these run on the real SlowFast with a one-layer head named as the reference's Linear head (`fc`,
# no bias) over the pooled features: the plumbing (container, prefixes, Linear transpose, orbax layout) is what
# is under test here; the heads' own naming is covered by the full round-trip tests.

class PooledFcHead(nnx.Module):
    def __init__(self, width: int, num_classes: int, rngs: nnx.Rngs):
        self.fc = nnx.Linear(width, num_classes, use_bias=False, rngs=rngs)

    def __call__(self, slow, fast, num_boxes: int):
        pooled = jnp.concatenate([slow.mean(axis=(1, 2, 3)), fast.mean(axis=(1, 2, 3))], axis=-1)
        return jnp.broadcast_to(self.fc(pooled)[:, None], (pooled.shape[0], num_boxes, self.fc.out_features))


class StandInDetector(nnx.Module):
    def __init__(self, model_config, rngs: nnx.Rngs):
        self.backbone = SlowFast(model_config.backbone, rngs=rngs)
        width = self.backbone.slow_channels + self.backbone.fast_channels
        self.head = PooledFcHead(width, int(model_config.num_classes), rngs)

    def __call__(self, clips, boxes, box_mask, valid_hw, *, train=False):
        slow, fast = self.backbone(clips)
        return self.head(slow, fast, boxes.shape[1])


class TorchPooledFcHead(torch.nn.Module):
    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(width, num_classes, bias=False)

    def forward(self, slow, fast):
        return self.fc(torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], dim=1))


def create_stand_in(config, seed=None):
    return StandInDetector(config.model, nnx.Rngs(params=int(config.seed) if seed is None else seed))


@pytest.fixture
def stand_in():
    """The model factory the converter and api.load_model use in these tests."""
    return create_stand_in


def model_inputs(cfg, seed: int = 3):
    rng = np.random.RandomState(seed)
    clips = rng.randn(2, int(cfg.data.num_frames), 32, 48, 3).astype(np.float32)
    boxes = np.tile(np.array([0.1, 0.2, 0.6, 0.9], np.float32), (2, 3, 1))
    box_mask = np.array([[True, True, False], [True, False, False]])
    return clips, boxes, box_mask, np.array([[32, 48], [32, 48]], np.int32)


def torch_stand_in(cfg, seed: int = 0):
    backbone = torch_backbone(cfg.model.backbone, seed)
    width = backbone.slow_res4[-1].conv3.out_channels + backbone.fast_res4[-1].conv3.out_channels
    head = TorchPooledFcHead(width, int(cfg.model.num_classes))
    with torch.no_grad():
        head.fc.weight.copy_(torch.randn(head.fc.weight.shape, generator=torch.Generator().manual_seed(seed)))
    return backbone, head


def torch_stand_in_logits(backbone, head, clips) -> np.ndarray:
    with torch.no_grad():
        slow, fast = backbone(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))
        return head(slow, fast).numpy()


@pytest.mark.parametrize("form", ["model_zoo", "training"])
def test_convert_then_load_model_gives_oracle_logits(tmp_path, stand_in, form):
    """A model-zoo (flat) and a training (`state_dict`) checkpoint convert; api.load_model's logits equal the
    torch model's (1e-4); the same directory restores as run.py --mode=eval does (Checkpointer.restore)."""
    from acar_jax import api  # noqa: PLC0415
    from acar_jax.state import checkpoints, train_state  # noqa: PLC0415
    from acar_jax.training import optim  # noqa: PLC0415
    from tools import convert_torch_checkpoint as conv  # noqa: PLC0415

    cfg = get_config()
    backbone, head = torch_stand_in(cfg)
    ddp = names.ddp_model(backbone, head)
    obj = ddp.state_dict() if form == "model_zoo" else names.training_checkpoint(ddp)
    torch.save(obj, str(tmp_path / "ckpt.pth.tar"))
    report = conv.convert(str(tmp_path / "ckpt.pth.tar"), cfg, str(tmp_path / "out"), create=stand_in)
    assert report.container == ("flat" if form == "model_zoo" else "state_dict")
    assert report.loaded["module.head.module.fc.weight"] == "head/fc/kernel"
    assert not report.unused and not report.missing

    clips, boxes, box_mask, valid_hw = model_inputs(cfg)
    ref = torch_stand_in_logits(backbone, head, clips)
    model = api.load_model(cfg, str(tmp_path / "out"), create=stand_in)
    logits = np.asarray(model.logits(clips, boxes, box_mask, valid_hw))
    err = float(np.max(np.abs(logits - ref[:, None])))
    print(f"{form}: logits max abs err {err:.2e} (max |logit| {np.max(np.abs(ref)):.2f})")
    assert err < ATOL

    tx = optim.gradient_transformation(cfg.train.optimizer)
    _, _, state = train_state.create_train_state(stand_in(cfg, seed=5), tx)
    ckpt = checkpoints.Checkpointer(str(tmp_path / "out"), every_steps=1, max_to_keep=1)
    restored = ckpt.restore(state)
    ckpt.close()
    np.testing.assert_array_equal(np.asarray(restored.params["head"]["fc"]["kernel"][...]),
                                  head.fc.weight.detach().numpy().T)


def test_convert_pyslowfast_backbone_for_fine_tuning(tmp_path, stand_in, capsys):
    """A PySlowFast Kinetics checkpoint: needs --allow_missing=head --allow_unused=classifier (report lists the
    classifier keys and the kept head arrays); init_from scope backbone takes exactly the oracle's backbone, and
    its features equal the oracle's."""
    from acar_jax.state import checkpoints, train_state  # noqa: PLC0415
    from acar_jax.training import optim  # noqa: PLC0415
    from tools import convert_torch_checkpoint as conv  # noqa: PLC0415

    cfg = get_config()
    backbone = torch_backbone(cfg.model.backbone)
    path = str(tmp_path / "SLOWFAST_8x8_R50.pyth")
    torch.save(names.pyslowfast_checkpoint(backbone), path)
    with pytest.raises(ti.CheckpointImportError, match=r"missing key for head/fc/kernel.*--allow_missing=head"):
        conv.convert(path, cfg, str(tmp_path / "refused"), allow_unused=["classifier"], create=stand_in)
    report = conv.convert(path, cfg, str(tmp_path / "out"), allow_missing=["head"], allow_unused=["classifier"],
                          create=stand_in)
    assert report.scheme == "pyslowfast"
    assert sorted(report.unused["classifier"]) == ["head.projection.bias", "head.projection.weight"]
    assert report.missing == {"head": ["head/fc/kernel"]}

    tx = optim.gradient_transformation(cfg.train.optimizer)
    _, _, fresh = train_state.create_train_state(stand_in(cfg, seed=9), tx)
    state = checkpoints.init_from(fresh, str(tmp_path / "out"), scope="backbone")
    np.testing.assert_array_equal(np.asarray(state.params["head"]["fc"]["kernel"][...]),
                                  np.asarray(fresh.params["head"]["fc"]["kernel"][...]))
    model = stand_in(cfg, seed=9)
    nnx.update(model, state.params, state.batch_stats)
    assert_features_equal(backbone, model, cfg.model.backbone)


def test_cli_refuses_untrusted_pickle_and_occupied_output(tmp_path):
    """The command line as a user runs it: a file needing arbitrary unpickling exits with status 1 and a message
    naming --trust_pickle, without running the payload; an --output that already holds checkpoints is refused."""
    import subprocess
    import sys

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "cfg": _Payload(str(marker))}, str(path))
    tool = os.path.join(str(paths.REPO), "tools",
                        "convert_torch_checkpoint.py")
    config = os.path.join(os.path.dirname(tool), "..", "configs", "default.py")
    result = subprocess.run([sys.executable, tool, f"--input={path}", f"--config={config}",
                             f"--output={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120)
    print(result.stderr[-400:])
    assert result.returncode == 1
    assert "--trust_pickle" in result.stderr and "posix.mkdir" in result.stderr
    assert not marker.exists()

    (tmp_path / "used" / "checkpoints" / "0").mkdir(parents=True)
    result = subprocess.run([sys.executable, tool, f"--input={path}", f"--config={config}",
                             f"--output={tmp_path / 'used'}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "already holds checkpoints" in result.stderr


class _Payload:
    """Unpickling this would create a directory (the marker the tests look for)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def full_backbone_config(name: str):
    from configs import ava_slowfast_r50_acar, ava_slowfast_r101_acar

    module = {"r50": ava_slowfast_r50_acar, "r101": ava_slowfast_r101_acar}[name]
    return module.get_config().model.backbone


def test_r101_checkpoint_into_r50_config_names_the_depth():
    """The real sizes: the reference R101 backbone's keys against the R50 ACAR config (and the reverse)."""
    r101 = sf_oracle.from_backbone_config(full_backbone_config("r101"))
    source = {f"module.backbone.module.{k}": v.numpy() for k, v in r101.state_dict().items()}
    with pytest.raises(ti.CheckpointImportError) as err:
        ti.import_into(abstract_backbone(full_backbone_config("r50")), source)
    msg = str(err.value)
    print(msg.splitlines()[1])
    assert ("depth mismatch at backbone/slow_res3: the checkpoint has 23 blocks, the model has 6 "
            "(model.backbone.layers) (e.g. key 'module.backbone.module.slow_res3.6.conv1.weight'") in msg


def full_clips(cfg, seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).randn(1, 32, 64, 64, 3).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name,form", [("r50", "pyslowfast"), ("r50", "kinetics_bare"), ("r101", "training")])
def test_full_size_backbone_import_equals_oracle(tmp_path, name, form):
    """Full-size R50 (PySlowFast `.pyth` and the reference's Kinetics file) and the R101 config (conv-only fusion
    kernel 5, ::alpha) from a reference training checkpoint: features equal the oracle's on a 32x64x64 clip
    (1e-4 relative to the largest activation)."""
    cfg = full_backbone_config(name)
    oracle = torch_backbone(cfg)
    if form == "pyslowfast":
        obj = names.pyslowfast_checkpoint(oracle)
    elif form == "kinetics_bare":
        obj = names.kinetics_backbone_file(oracle)
    else:
        obj = names.training_checkpoint(names.ddp_model(oracle, torch.nn.Identity()))
    source, container = save_and_load(tmp_path, obj)
    model = abstract_backbone(cfg)
    report = ti.import_into(model, source, allow_unused=("classifier",), container=container)
    assert len(report.loaded) == len([k for k in oracle.state_dict() if not k.endswith("num_batches_tracked")])
    clips = full_clips(cfg)
    with torch.no_grad():
        ref = oracle(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))
    ours = nnx.jit(lambda m, x: m.backbone(x))(model, jnp.asarray(clips))
    for r, o, part in zip(ref, ours, ("slow", "fast"), strict=True):
        r = r.permute(0, 2, 3, 4, 1).numpy()
        err = float(np.max(np.abs(r - np.asarray(o))))
        scale = float(np.max(np.abs(r)))
        print(f"{name} {form} {part}: max abs err {err:.2e}, max |x| {scale:.2f}")
        assert err <= 1e-4 * max(1.0, scale)


@pytest.mark.parametrize("torch_shape,target_shape,expected", [
    ((6, 5, 3, 2, 4), (3, 2, 4, 5, 6), (2, 3, 4, 1, 0)),   # Conv3d
    ((6, 5, 3, 2), (3, 2, 5, 6), (2, 3, 1, 0)),            # Conv2d
    ((6, 5), (5, 6), (1, 0)),                              # Linear
])
def test_layout_rules(torch_shape, target_shape, expected):
    """Torch [out, in, *k] kernels become (*k, in, out); 1x1 Conv2d may be a dense kernel; Conv2d may be a
    (1, kh, kw) Conv3d kernel; norms stay as they are."""
    value = np.arange(np.prod(torch_shape), dtype=np.float32).reshape(torch_shape)
    out = ti._convert_array("k", value, target_shape, ("head", "x", "kernel"))
    np.testing.assert_array_equal(out, np.transpose(value, expected))
    dense = np.arange(30, dtype=np.float32).reshape(6, 5, 1, 1)
    np.testing.assert_array_equal(ti._convert_array("k", dense, (5, 6), ("p",)), dense[:, :, 0, 0].T)
    conv2d = np.arange(6 * 5 * 9, dtype=np.float32).reshape(6, 5, 3, 3)
    np.testing.assert_array_equal(ti._convert_array("k", conv2d, (1, 3, 3, 5, 6), ("p",)),
                                  np.transpose(conv2d, (2, 3, 1, 0))[None])
    with pytest.raises(ti.CheckpointImportError, match=r"key 'k' has torch shape \(6, 5\)"):
        ti._convert_array("k", np.zeros((6, 5), np.float32), (6, 5, 1), ("p",))


_CLI_WITH_STAND_IN = """
import functools
import sys
from tests.interop.test_torch_import import create_stand_in
from tools import convert_torch_checkpoint as tool
sys.argv = ["convert_torch_checkpoint.py"] + sys.argv[1:]
tool.app.run(functools.partial(tool.main, create=create_stand_in))
"""


def test_cli_converts_a_kinetics_backbone(tmp_path):
    """The flags end to end (main is given the stand-in detector's factory): a PySlowFast file with
    --allow_missing=head --allow_unused=classifier and a config override writes DIR/checkpoints/0, prints the
    report with the classifier keys and the fine-tuning command."""
    import subprocess
    import sys

    from acar_jax.state import checkpoints

    cfg = get_config()
    path = tmp_path / "k400.pyth"
    torch.save(names.pyslowfast_checkpoint(torch_backbone(cfg.model.backbone)), str(path))
    root = str(paths.REPO)
    result = subprocess.run(
        [sys.executable, "-c", _CLI_WITH_STAND_IN, f"--input={path}", "--config=configs/default.py",
         "--config.model.num_classes=5", f"--output={tmp_path / 'out'}", "--allow_missing=head",
         "--allow_unused=classifier"], capture_output=True, text=True, timeout=180, cwd=root)
    print(result.stdout[-1500:], result.stderr[-1500:])
    assert result.returncode == 0
    assert "naming scheme: pyslowfast (container: model_state)" in result.stdout
    assert "head.projection.weight" in result.stdout and "head/fc/kernel" in result.stdout
    assert "--config.checkpoint.init_scope=backbone" in result.stdout
    raw = checkpoints.read_checkpoint(str(tmp_path / "out" / "checkpoints"))
    assert raw["params"]["head"]["fc"]["kernel"].shape[-1] == 5


# ------------------------------------------------------------------- full round trip with the real detector

def torch_detector(model_config, seed: int = 0):
    from acar_jax.interop.torch_reference import heads as torch_heads

    backbone = torch_backbone(model_config.backbone, seed)
    head = torch_heads.randomize_(torch_heads.from_model_config(
        model_config, backbone.slow_inplanes + backbone.fast_inplanes), seed)
    return backbone, head


def round_trip(tmp_path, config, form: str, num_frames: int) -> float:
    """Oracle (reference names) -> torch.save (zoo or training form) -> converter -> api.load_model logits."""
    from acar_jax import api
    from acar_jax.interop.torch_reference import heads as torch_heads
    from tests.models.test_detector import make_inputs
    from tools import convert_torch_checkpoint as conv

    backbone, head = torch_detector(config.model)
    ddp = names.ddp_model(backbone, head)
    torch.save(ddp.state_dict() if form == "model_zoo" else names.training_checkpoint(ddp),
               str(tmp_path / "ckpt.pth.tar"))
    report = conv.convert(str(tmp_path / "ckpt.pth.tar"), config, str(tmp_path / "out"))
    assert not report.unused and not report.missing
    clips, boxes, mask, valid_hw = make_inputs(num_frames, (64, 96), np.array([[64, 96], [48, 80]]), (2, 1), 3)
    with torch.no_grad():
        slow, fast = backbone(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))
        want = torch_heads.run_oracle(head, slow, fast, boxes, mask, valid_hw, clips.shape[2:4]).numpy()
    got = np.asarray(api.load_model(config, str(tmp_path / "out")).logits(clips, boxes, mask, valid_hw))
    err = float(np.max(np.abs(got - want) * mask[..., None]))
    rel = err / max(1.0, float(np.abs(want).max()))
    print(f"{config.model.head.type} {form}: max abs err {err:.2e}, relative {rel:.2e}")
    return rel


@pytest.mark.parametrize("head_type,form", [("acar", "model_zoo"), ("acar", "training"), ("linear", "model_zoo")])
def test_tiny_round_trip_logits_equal_oracle(tmp_path, head_type, form):
    """Tiny config, real ACARDetector: the converted checkpoint's logits equal the torch oracle's (1e-4)."""
    config = get_config()
    config.model.head.type = head_type
    assert round_trip(tmp_path, config, form, 8) < ATOL


@pytest.mark.slow
@pytest.mark.parametrize("name,head_type", [("r50", "linear"), ("r50", "acar"), ("r101", "acar")])
def test_full_size_round_trip_logits_equal_oracle(tmp_path, name, head_type):
    """R50 Linear, R50 ACAR and the R101 ACAR config (depth 1, mlp_1x1, conv-only fusion k5, ::alpha) at full
    size on 32-frame 64x96 clips: logits within 1e-4 of the oracle (relative to the largest logit)."""
    from configs import ava_slowfast_r50_acar, ava_slowfast_r101_acar

    config = {"r50": ava_slowfast_r50_acar, "r101": ava_slowfast_r101_acar}[name].get_config()
    config.model.head.type = head_type
    assert round_trip(tmp_path, config, "model_zoo", 32) < 1e-4


@pytest.mark.parametrize("content,trust", [(b"not a checkpoint\n", False), (bytes(range(7, 200)), True)])
def test_cli_names_a_file_that_is_not_a_checkpoint(tmp_path, content, trust):
    """Text, random bytes or an empty file: "not a PyTorch checkpoint", never --trust_pickle advice (even with
    the flag given); exit status 1 and no traceback."""
    import subprocess
    import sys

    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    tool = os.path.join(str(paths.REPO), "tools",
                        "convert_torch_checkpoint.py")
    config = os.path.join(os.path.dirname(tool), "..", "configs", "default.py")
    result = subprocess.run([sys.executable, tool, f"--input={path}", f"--config={config}",
                             f"--output={tmp_path / 'out'}"] + (["--trust_pickle"] if trust else []),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-400:]
    assert f"{path}: not a PyTorch checkpoint" in result.stderr
    assert "--trust_pickle" not in result.stderr and "Traceback" not in result.stderr


def test_empty_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ti.CheckpointImportError, match="not a PyTorch checkpoint.*an empty file"):
        ti.load_torch_file(str(path), trust_pickle=True)
