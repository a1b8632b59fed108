"""Import released PyTorch weights (ACAR-Net checkpoints, PySlowFast Kinetics checkpoints) into the Flax tree.

Two naming schemes are understood; both end in the Flax model's own state paths (`backbone/...`, `head/...`):

ACAR-Net (`models/` of the reference): training checkpoints `{'epoch', 'state_dict', ...}`, model-zoo files
(flat state dicts) with keys `module.backbone.module.<SlowFast attr>` / `module.head.module.<head attr>`, and
the Kinetics-pretrained backbone files (`SLOWFAST_R50_K400.pth.tar`) whose keys are the bare SlowFast
attributes, plus the Kinetics classifier `fc.*`.

    <backbone>.fast_res1.0.conv1.weight     -> backbone/fast_res1/0/conv1/kernel
    <backbone>.fast_res1.0.downsample.0.*   -> backbone/fast_res1/0/downsample/*   (nn.Sequential(conv))
    <backbone>.Tconv1.weight                -> backbone/Tconv1/conv/kernel         (conv-only fusion)
    <backbone>.Tconv1.0.* / Tconv1.1.*      -> backbone/Tconv1/conv/* / bn/*       (conv + BN + ReLU fusion)
    <head>.hr2o.0.conv_q.weight             -> head/hr2o/0/conv_q/kernel           (every head attr as named)

PySlowFast (`slowfast/models/video_model_builder.py`, `.pyth` files wrap the weights in `model_state`);
pathway0 is the slow pathway, pathway1 the fast one, stage s{k} is the reference's res{k-1}:

    s1.pathway{0,1}_stem.conv / .bn          -> {slow,fast}_conv1 / {slow,fast}_bn1
    s{k}.pathway{p}_res{i}.branch2.{a,b,c}   -> {slow,fast}_res{k-1}.{i}.conv{1,2,3}   (a_bn..c_bn: bn1..bn3)
    s{k}.pathway{p}_res{i}.branch1 / _bn     -> {slow,fast}_res{k-1}.{i}.downsample / downsample_bn
    s{k}_fuse.conv_f2s / .bn                 -> Tconv{k}.conv / Tconv{k}.bn
    head.*                                   -> (the Kinetics classifier: category "classifier")

PySlowFast's res5 has stride 2 and no dilation where ACAR-Net uses stride 1 and dilation 2; the weights have
the same shapes and the reference loads them into its dilated res5 unchanged, as done here. Non-local blocks
and temporal kernels that differ from the target (e.g. PySlowFast R101 `NUM_BLOCK_TEMP_KERNEL` variants) fail
with the key named.

Leaves: conv `weight` [out, in, kt, kh, kw] -> `kernel` (kt, kh, kw, in, out) (2-D: [out, in, kh, kw] ->
(kh, kw, in, out)); Linear `weight` [out, in] -> `kernel` (in, out); BatchNorm / GroupNorm `weight`, `bias`,
`running_mean`, `running_var` -> `scale`, `bias`, `mean`, `var`; `num_batches_tracked` is ignored.

Strict: every source key is used exactly once, every target array is filled, shapes are checked; relaxations
are named groups (`allow_missing=("head",)`, `allow_unused=("classifier",)`) and what they let through is
listed in the report. torch is imported only by `load_torch_file`.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

Path = tuple[str | int, ...]

MISSING_GROUPS = ("backbone", "head")     # target subtrees that may keep their initial values
UNUSED_GROUPS = ("classifier", "head")    # source key groups that may be left unused
MAX_LISTED = 25                           # problems listed in one error message

_BN_LEAF = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_IGNORED_LEAF = "num_batches_tracked"

# ACAR-Net prefixes: (DDP) AVA_model.backbone / .head, each wrapping its network in `.module`.
_ACAR_PREFIXES = (("module.backbone.module.", "backbone"), ("module.head.module.", "head"),
                  ("backbone.module.", "backbone"), ("head.module.", "head"))
# Reference SlowFast module paths -> this project's SlowFast module paths (applied in order).
_BACKBONE_RENAMES = (
    (re.compile(r"\.downsample\.0$"), ".downsample"),   # reference downsample is nn.Sequential(conv)
    (re.compile(r"^(Tconv\d)\.0$"), r"\1.conv"),       # conv + BN + ReLU fusion: Sequential index 0 / 1
    (re.compile(r"^(Tconv\d)\.1$"), r"\1.bn"),
    (re.compile(r"^(Tconv\d)$"), r"\1.conv"),          # conv-only fusion: the conv is the Tconv itself
)
# PySlowFast names -> reference SlowFast names.
_PSF_PATHWAY = {"0": "slow", "1": "fast"}
_PSF_BRANCH2 = {"a": "conv1", "a_bn": "bn1", "b": "conv2", "b_bn": "bn2", "c": "conv3", "c_bn": "bn3"}
_PSF_STEM = re.compile(r"^s1\.pathway([01])_stem\.(conv|bn)\.(\w+)$")
_PSF_RES = re.compile(
    r"^s([2-5])\.pathway([01])_res(\d+)\.(branch1|branch1_bn|branch2\.(?:a|b|c)(?:_bn)?)\.(\w+)$")
_PSF_FUSE = re.compile(r"^s([1-4])_fuse\.(conv_f2s|bn)\.(\w+)$")
_PSF_MARKER = re.compile(r"^(module\.)?s1\.pathway\d_stem\.")
# Config fields that set the number of entries of an indexed submodule list (for depth-mismatch messages).
_DEPTH_FIELDS = {"slow_res": "model.backbone.layers", "fast_res": "model.backbone.layers",
                 "hr2o": "model.head.depth"}


class CheckpointImportError(ValueError):
    """A checkpoint that does not fit the model (or cannot be read safely); the message names the key."""


@dataclasses.dataclass(frozen=True)
class SourceKey:
    """Where one source key goes: `target` (a Flax path) or, when None, the unused `group` it belongs to."""

    key: str
    target: Path | None
    group: str  # "backbone" | "head" | "classifier" | "unknown"


@dataclasses.dataclass
class ImportReport:
    """What an import did, for the user to read (`format()`), and for tests."""

    scheme: str                                   # "acar" | "pyslowfast"
    container: str                                # "flat" | "state_dict" | "model_state"
    loaded: dict[str, str]                        # source key -> target path
    unused: dict[str, list[str]]                  # allowed group -> source keys left unused
    missing: dict[str, list[str]]                 # allowed group -> target paths kept at initial values
    ignored: list[str]                            # num_batches_tracked entries

    def format(self) -> str:
        """A human-readable summary listing every unused key and every missing target."""
        lines = [f"naming scheme: {self.scheme} (container: {self.container})",
                 f"loaded: {len(self.loaded)} arrays; ignored: {len(self.ignored)} num_batches_tracked"]
        for group, keys in sorted(self.unused.items()):
            lines.append(f"unused ({group}, allowed): {len(keys)} keys")
            lines += [f"  {k}" for k in keys]
        for group, paths in sorted(self.missing.items()):
            lines.append(f"missing ({group}, allowed; kept at their initial values): {len(paths)} arrays")
            lines += [f"  {p}" for p in paths]
        return "\n".join(lines)


def path_str(path: Path) -> str:
    """('backbone', 'slow_res1', 0, 'conv1', 'kernel') -> 'backbone/slow_res1/0/conv1/kernel'."""
    return "/".join(str(p) for p in path)


# ------------------------------------------------------------------------------------------- reading files

_ZIP_MAGIC = b"PK\x03\x04"          # torch.save since 1.6: a zip archive holding data.pkl
_PICKLE_PROTO = b"\x80"              # the legacy format: a pickle (protocol >= 2 starts with PROTO)


def check_torch_file_format(path: str) -> None:
    """Refuses a file that is neither format torch.save writes (a zip archive, or a legacy pickle / tar), so a
    text file or random bytes get "not a PyTorch checkpoint" instead of unpickling advice."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise FileNotFoundError(f"--input: no such checkpoint file: {path}") from None
    except IsADirectoryError:
        raise CheckpointImportError(f"{path}: is a directory, not a PyTorch checkpoint file") from None
    is_tar = len(head) >= 262 and head[257:262] == b"ustar"    # torch < 0.4's tar format
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO) or is_tar:
        return
    what = "an empty file" if not head else f"its first bytes are {head[:8]!r}"
    raise CheckpointImportError(
        f"{path}: not a PyTorch checkpoint: torch.save writes a zip archive (starting with {_ZIP_MAGIC!r}) or a "
        f"pickle (starting with {_PICKLE_PROTO!r}), but {what}")


def load_torch_file(path: str, *, trust_pickle: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """Reads a PyTorch checkpoint into (flat {key: float32 numpy array}, container name).

    Safe by default: `torch.load(..., weights_only=True)` never runs code stored in the pickle; a file that
    needs more is refused unless `trust_pickle` (the CLI's `--trust_pickle`) says the user trusts it.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError("reading PyTorch checkpoints needs torch (only the converter does): "
                          "pip install torch  (the CPU build is enough)") from e
    check_torch_file_format(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except FileNotFoundError:
        raise FileNotFoundError(f"--input: no such checkpoint file: {path}") from None
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # torch's first line is generic advice; the one naming the refused global says why.
        first = next((ln for ln in lines if "GLOBAL" in ln or "global" in ln), lines[0] if lines else repr(e))
        raise CheckpointImportError(
            f"{path}: refused to load: it cannot be read with torch.load(weights_only=True), which only "
            f"allows tensors and plain containers (torch says: {first}). Unpickling it could run arbitrary "
            "code. If you trust this file, pass --trust_pickle (library: trust_pickle=True).") from None
    return unwrap_state_dict(obj, path, to_numpy=_torch_to_numpy)


def _torch_to_numpy(value: Any) -> np.ndarray:
    """A tensor (any float dtype, any device) -> numpy; float tensors become float32 (numpy has no bf16)."""
    tensor = value.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.numpy()


def unwrap_state_dict(obj: Any, source: str, *, to_numpy: Callable[[Any], np.ndarray] = np.asarray
                      ) -> tuple[dict[str, np.ndarray], str]:
    """Finds the weights in a loaded checkpoint: `state_dict` (ACAR-Net training), `model_state` (PySlowFast),
    or the object itself (model-zoo / pretrained files). Returns ({key: array}, container name)."""
    if not isinstance(obj, Mapping):
        raise CheckpointImportError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    container = "flat"
    for name in ("state_dict", "model_state"):
        if name in obj and isinstance(obj[name], Mapping):
            obj, container = obj[name], name
            break
    arrays = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not hasattr(value, "shape"):
            top = sorted(map(str, obj))[:10]
            raise CheckpointImportError(
                f"{source}: key {key!r} holds a {type(value).__name__}, not a tensor; expected a flat state "
                f"dict or a dict with 'state_dict' (ACAR-Net) or 'model_state' (PySlowFast); top-level keys: "
                f"{top}")
        arrays[key] = to_numpy(value)
    if not arrays:
        raise CheckpointImportError(f"{source}: the state dict ({container}) is empty")
    return arrays, container


# ------------------------------------------------------------------------------------------------ key mapping

def detect_scheme(keys: Iterable[str]) -> str:
    """'pyslowfast' when the PySlowFast stem is present, else 'acar'."""
    return "pyslowfast" if any(_PSF_MARKER.match(k) for k in keys) else "acar"


def _split_module(module: str) -> Path:
    return tuple(int(p) if p.isdigit() else p for p in module.split("."))


def _leaf(leaf: str, ndim: int) -> str | None:
    """Torch leaf name -> Flax leaf name (`weight` is a kernel for 2-D and up, a norm scale when 1-D)."""
    if leaf == "weight" and ndim >= 2:
        return "kernel"
    return _BN_LEAF.get(leaf)


def _module_path(group: str, name: str, ndim: int) -> Path | None:
    """A key inside the backbone or head (no prefix) -> its Flax path, or None if it names no array."""
    if "." not in name:
        return None
    module, leaf = name.rsplit(".", 1)
    if group == "backbone":
        for pattern, repl in _BACKBONE_RENAMES:
            module = pattern.sub(repl, module)
    flax_leaf = _leaf(leaf, ndim)
    return None if flax_leaf is None else (group, *_split_module(module), flax_leaf)


def pyslowfast_to_reference(key: str) -> str | None:
    """A PySlowFast backbone key -> the reference SlowFast key it corresponds to (None: no counterpart)."""
    if m := _PSF_STEM.match(key):
        pathway, part, leaf = m.groups()
        return f"{_PSF_PATHWAY[pathway]}_{'conv1' if part == 'conv' else 'bn1'}.{leaf}"
    if m := _PSF_RES.match(key):
        stage, pathway, block, part, leaf = m.groups()
        prefix = f"{_PSF_PATHWAY[pathway]}_res{int(stage) - 1}.{block}"
        if part == "branch1":
            return f"{prefix}.downsample.0.{leaf}"
        if part == "branch1_bn":
            return f"{prefix}.downsample_bn.{leaf}"
        return f"{prefix}.{_PSF_BRANCH2[part.split('.', 1)[1]]}.{leaf}"
    if m := _PSF_FUSE.match(key):
        stage, part, leaf = m.groups()
        return f"Tconv{stage}.{0 if part == 'conv_f2s' else 1}.{leaf}"
    return None


def map_source_keys(source: Mapping[str, np.ndarray], scheme: str) -> list[SourceKey]:
    """Where each source key goes (num_batches_tracked excluded). Pure naming: no target is consulted."""
    keys = [k for k in source if not k.endswith(_IGNORED_LEAF)]
    if scheme == "pyslowfast":
        strip = "module." if all(k.startswith("module.") for k in keys) else ""
        out = []
        for key in keys:
            name = key[len(strip):]
            ref = pyslowfast_to_reference(name)
            if ref is not None:
                out.append(SourceKey(key, _module_path("backbone", ref, source[key].ndim), "backbone"))
            else:
                out.append(SourceKey(key, None, "classifier" if name.startswith("head.") else "unknown"))
        return out
    if scheme != "acar":
        raise ValueError(f"scheme: expected 'acar' or 'pyslowfast', got {scheme!r}")
    prefixed = any(k.startswith(p) for k in keys for p, _ in _ACAR_PREFIXES)
    strip = "module." if not prefixed and all(k.startswith("module.") for k in keys) else ""
    out = []
    for key in keys:
        ndim = source[key].ndim
        if not prefixed:  # a bare backbone file (Kinetics-pretrained); its classifier is `fc`
            name = key[len(strip):]
            if name.startswith("fc."):
                out.append(SourceKey(key, None, "classifier"))
            else:
                out.append(SourceKey(key, _module_path("backbone", name, ndim), "backbone"))
            continue
        for prefix, group in _ACAR_PREFIXES:
            if key.startswith(prefix):
                name = key[len(prefix):]
                out.append(SourceKey(key, _module_path(group, name, ndim), group))
                break
        else:
            out.append(SourceKey(key, None, "unknown"))
    return out


# ------------------------------------------------------------------------------------------- strict matching

def _list_counts(paths: Iterable[Path]) -> dict[Path, int]:
    """For every indexed submodule list (a path prefix followed by an int): its number of entries."""
    counts: dict[Path, int] = {}
    for path in paths:
        for i, part in enumerate(path):
            if isinstance(part, int):
                prefix = path[:i]
                counts[prefix] = max(counts.get(prefix, 0), part + 1)
    return counts


def _depth_errors(mapped: list[SourceKey], targets: Mapping[Path, Any]) -> list[str]:
    """Lists (stages, HR2O blocks) whose length differs between checkpoint and model, naming a key."""
    src_counts = _list_counts(s.target for s in mapped if s.target is not None)
    dst_counts = _list_counts(targets)
    errors = []
    for prefix, n_src in sorted(src_counts.items(), key=lambda kv: path_str(kv[0])):
        n_dst = dst_counts.get(prefix)
        if n_dst is None or n_dst == n_src:
            continue
        if n_src > n_dst:  # name a checkpoint key of a block the model does not have
            example = next(s.key for s in mapped if s.target is not None and s.target[:len(prefix)] == prefix
                           and s.target[len(prefix)] == n_dst)
            where = f" (e.g. key {example!r} has no counterpart)"
        else:  # name a model array the checkpoint cannot fill
            example = next(p for p in targets if p[:len(prefix)] == prefix and p[len(prefix)] == n_src)
            where = f" (e.g. {path_str(example)} has no key)"
        field = _DEPTH_FIELDS.get(re.sub(r"\d+$", "", str(prefix[-1])), "the model config")
        errors.append(f"depth mismatch at {path_str(prefix)}: the checkpoint has {n_src} blocks, the model "
                      f"has {n_dst} ({field}){where}")
    return errors


def _convert_array(key: str, value: np.ndarray, target_shape: tuple[int, ...], path: Path) -> np.ndarray:
    """Torch layout -> Flax layout for one array, chosen by the two ranks; raises on any shape mismatch."""
    if value.ndim == len(target_shape) and value.ndim >= 2:
        perm = (*range(2, value.ndim), 1, 0)  # [out, in, *k] -> (*k, in, out); Linear [out, in] -> (in, out)
        converted = np.transpose(value, perm)
    elif value.ndim == 4 and len(target_shape) == 2 and value.shape[2:] == (1, 1):
        converted = value[:, :, 0, 0].T  # 1x1 Conv2d stored as a dense kernel
    elif value.ndim == 4 and len(target_shape) == 5 and target_shape[0] == 1:
        converted = np.transpose(value, (2, 3, 1, 0))[None]  # Conv2d stored as a (1, kh, kw) Conv3d kernel
    else:
        converted = value
    if converted.shape != tuple(target_shape):
        raise CheckpointImportError(
            f"shape mismatch: key {key!r} has torch shape {tuple(value.shape)} -> Flax {converted.shape}, "
            f"but the model's {path_str(path)} has shape {tuple(target_shape)}")
    return np.ascontiguousarray(converted)


def match_state(source: Mapping[str, np.ndarray], targets: Mapping[Path, Any], *, scheme: str | None = None,
                allow_missing: Iterable[str] = (), allow_unused: Iterable[str] = (), container: str = "flat",
                source_name: str = "checkpoint") -> tuple[dict[Path, np.ndarray], ImportReport]:
    """Maps every source array onto `targets` ({path: array or ShapeDtypeStruct}) strictly.

    Returns ({path: converted array} for every filled target, report). Raises CheckpointImportError listing
    every problem (each naming its key or path): depth mismatches, unknown or unused keys outside
    `allow_unused`, targets not filled outside `allow_missing`, two keys for one target, shape mismatches.
    """
    allow_missing, allow_unused = set(allow_missing), set(allow_unused)
    if bad := allow_missing - set(MISSING_GROUPS):
        raise ValueError(f"allow_missing: unknown groups {sorted(bad)}; expected some of {MISSING_GROUPS}")
    if bad := allow_unused - set(UNUSED_GROUPS):
        raise ValueError(f"allow_unused: unknown groups {sorted(bad)}; expected some of {UNUSED_GROUPS}")
    scheme = scheme or detect_scheme(source)
    mapped = map_source_keys(source, scheme)
    errors = _depth_errors(mapped, targets)

    values: dict[Path, np.ndarray] = {}
    loaded: dict[str, str] = {}
    unused: dict[str, list[str]] = {}
    used_by: dict[Path, str] = {}
    for item in mapped:
        if item.target is None or item.target not in targets:
            group = item.group
            if group in allow_unused:
                unused.setdefault(group, []).append(item.key)
            elif item.target is None:
                errors.append(f"unused key {item.key!r}: no rule maps it to the model ({scheme} naming, "
                              f"group {item.group}){_allow_hint('unused', group)}")
            else:
                errors.append(f"unused key {item.key!r}: maps to {path_str(item.target)}, which the model "
                              f"does not have{_allow_hint('unused', group)}")
            continue
        if item.target in used_by:
            errors.append(f"duplicate: keys {used_by[item.target]!r} and {item.key!r} both map to "
                          f"{path_str(item.target)}")
            continue
        used_by[item.target] = item.key
        try:
            values[item.target] = _convert_array(item.key, source[item.key], _shape(targets[item.target]),
                                                 item.target)
        except CheckpointImportError as e:
            errors.append(str(e))
            continue
        loaded[item.key] = path_str(item.target)

    missing: dict[str, list[str]] = {}
    for path in sorted(set(targets) - set(used_by), key=path_str):
        group = str(path[0])
        if group in allow_missing:
            missing.setdefault(group, []).append(path_str(path))
        else:
            errors.append(f"missing key for {path_str(path)}: the checkpoint has nothing for it"
                          f"{_allow_hint('missing', group)}")
    if errors:
        shown = errors[:MAX_LISTED]
        more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
        raise CheckpointImportError(f"{source_name}: {len(errors)} problem(s) importing into the model:\n  "
                                    + "\n  ".join(shown) + more)
    ignored = sorted(k for k in source if k.endswith(_IGNORED_LEAF))
    return values, ImportReport(scheme, container, loaded, unused, missing, ignored)


def _allow_hint(kind: str, group: str) -> str:
    groups = UNUSED_GROUPS if kind == "unused" else MISSING_GROUPS
    return f" (allow with --allow_{kind}={group})" if group in groups else ""


def _shape(target: Any) -> tuple[int, ...]:
    return tuple(target.shape)


# ------------------------------------------------------------------------------------------ the Flax side

def model_arrays(model: nnx.Module) -> nnx.State:
    """The model's importable state: parameters and BatchNorm statistics."""
    return nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))


def import_into(model: nnx.Module, source: Mapping[str, np.ndarray], **kwargs: Any) -> ImportReport:
    """Writes the source arrays into `model` in place (strict; kwargs as `match_state`). Returns the report.

    The model may be abstract (`nnx.eval_shape`) only when every target is filled: missing arrays keep the
    model's values, so those must be real.
    """
    flat = dict(nnx.to_flat_state(model_arrays(model)))
    targets = {path: var.get_value() for path, var in flat.items()}
    values, report = match_state(source, targets, **kwargs)
    abstract = [path_str(p) for p in targets if p not in values
                and isinstance(targets[p], jax.ShapeDtypeStruct)]
    if abstract:
        raise ValueError(f"model: built abstractly but {len(abstract)} arrays are not in the checkpoint "
                         f"(e.g. {abstract[0]}); build it concretely to keep their initial values")
    for path, value in values.items():
        flat[path].set_value(jax.numpy.asarray(value, _dtype(targets[path])))
    nnx.update(model, nnx.from_flat_state(flat))
    return report


def _dtype(target: Any) -> Any:
    return target.dtype
