"""The key layouts of released PyTorch checkpoints, built from live torch modules, for the importer's tests.

Written from the sources' module structure, independently of `acar_jax.interop.torch_import`:
- ACAR-Net (`models/__init__.py`, `models/backbones/__init__.py`, `models/heads/__init__.py`): `AVA_model`
  has `.backbone` and `.head`, each an `AVA_backbone` / `AVA_head` wrapping its network in `.module`; training
  runs under DistributedDataParallel, which adds the outer `module.`. Training checkpoints (`main.py`) are
  `{'epoch', 'state_dict', 'optimizer', 'scheduler'}`; model-zoo files are the flat state dict.
- The Kinetics-pretrained backbone files (`pretrained/SLOWFAST_R50_K400.pth.tar`) are loaded by
  `load_pretrain` straight into the SlowFast module, so their keys are the bare SlowFast attributes; the
  Kinetics classifier is modelled as `fc` (the `nn.Linear` of the SlowFast code the reference derives from).
- PySlowFast (`slowfast/models/video_model_builder.py`, `resnet_helper.py`, `stem_helper.py`): stem
  `s1.pathway{p}_stem.{conv,bn}`, stages `s{k}.pathway{p}_res{i}.branch1{,_bn}` / `.branch2.{a,b,c}{,_bn}`,
  fusion `s{k}_fuse.{conv_f2s,bn}`, classifier `head.projection`; `.pyth` files are
  `{'epoch', 'model_state', 'optimizer_state', 'cfg'}` with `cfg` a YAML string.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn as tnn


class Wrapped(tnn.Module):
    """Holds a module as `.module` (AVA_backbone / AVA_head, and DistributedDataParallel)."""

    def __init__(self, module: tnn.Module):
        super().__init__()
        self.module = module


class AVAModel(tnn.Module):
    """The reference `AVA_model` parameter tree: `.backbone.module` and `.head.module` (the neck has none)."""

    def __init__(self, backbone: tnn.Module, head: tnn.Module):
        super().__init__()
        self.backbone = Wrapped(backbone)
        self.head = Wrapped(head)


def ddp_model(backbone: tnn.Module, head: tnn.Module) -> Wrapped:
    """`DistributedDataParallel(AVA_model)`: keys `module.backbone.module.*`, `module.head.module.*`."""
    return Wrapped(AVAModel(backbone, head))


def training_checkpoint(model: tnn.Module, epoch: int = 6) -> dict:
    """What the reference's `main.py` saves: epoch, state_dict, optimizer and scheduler state."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.008, momentum=0.9, nesterov=True, weight_decay=1e-7)
    return {"epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": {"base_lr": 0.008, "warmup_lr": 0.064, "last_iter": 123}}


def kinetics_backbone_file(backbone: tnn.Module, num_classes: int = 400, seed: int = 0) -> OrderedDict:
    """A Kinetics-pretrained backbone file in the reference's naming: SlowFast keys + the `fc` classifier."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict(backbone.state_dict())
    width = _output_width(state)
    state["fc.weight"] = torch.randn(num_classes, width, generator=g)
    state["fc.bias"] = torch.randn(num_classes, generator=g)
    return state


def _output_width(state: dict) -> int:
    """slow + fast output channels (2304 for R50) from the last blocks' conv3."""
    def last_conv3(pathway: str) -> int:
        keys = [k for k in state if re.match(rf"{pathway}_res4\.\d+\.conv3\.weight$", k)]
        return int(state[max(keys, key=lambda k: int(k.split(".")[1]))].shape[0])
    return last_conv3("slow") + last_conv3("fast")


_PATHWAY = {"slow": 0, "fast": 1}
_BRANCH2 = {"conv1": "a", "bn1": "a_bn", "conv2": "b", "bn2": "b_bn", "conv3": "c", "bn3": "c_bn"}


def pyslowfast_name(key: str) -> str:
    """A reference SlowFast key -> the PySlowFast key of the same tensor."""
    if m := re.match(r"^(slow|fast)_(conv1|bn1)\.(\w+)$", key):
        pathway, part, leaf = m.groups()
        return f"s1.pathway{_PATHWAY[pathway]}_stem.{'conv' if part == 'conv1' else 'bn'}.{leaf}"
    if m := re.match(r"^(slow|fast)_res(\d)\.(\d+)\.(.+)$", key):
        pathway, stage, block, rest = m.groups()
        prefix = f"s{int(stage) + 1}.pathway{_PATHWAY[pathway]}_res{block}"
        if rest.startswith("downsample.0."):
            return f"{prefix}.branch1.{rest.split('.', 2)[2]}"
        if rest.startswith("downsample_bn."):
            return f"{prefix}.branch1_bn.{rest.split('.', 1)[1]}"
        part, leaf = rest.split(".", 1)
        return f"{prefix}.branch2.{_BRANCH2[part]}.{leaf}"
    if m := re.match(r"^Tconv(\d)\.([01])\.(\w+)$", key):
        stage, index, leaf = m.groups()
        return f"s{stage}_fuse.{'conv_f2s' if index == '0' else 'bn'}.{leaf}"
    raise KeyError(f"{key!r}: no PySlowFast counterpart (PySlowFast fusion is always conv + BN + ReLU)")


def pyslowfast_checkpoint(backbone: tnn.Module, num_classes: int = 400, seed: int = 0) -> dict:
    """A PySlowFast `.pyth` checkpoint holding the oracle backbone's tensors under PySlowFast names."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict((pyslowfast_name(k), v) for k, v in backbone.state_dict().items())
    width = _output_width(backbone.state_dict())
    state["head.projection.weight"] = torch.randn(num_classes, width, generator=g)
    state["head.projection.bias"] = torch.randn(num_classes, generator=g)
    return {"epoch": 196, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
            "cfg": "MODEL:\n  ARCH: slowfast\n  NUM_CLASSES: 400\nSLOWFAST:\n  ALPHA: 4\n"}
