"""A serving artifact: the inference function (clips, boxes, box_mask, valid_hw) -> scores, weights baked in,
serialized with `jax.export` (StableHLO), so that a server runs it with jax alone (no acar_jax, no flax).

  model_dir/model.jaxexport      jax.export.Exported.serialize() of predict(clips, boxes, box_mask, valid_hw)
  model_dir/signature.json       input shapes/dtypes ("b" = symbolic batch), class ids and names, the
                                 preprocessing the clips must have (fps, frames, stride, short side, mean/std)
  model_dir/load_exported.py     a standalone loader (jax + numpy only): see LOADER below

acar_jax/inference/export/saved_model.py writes the same function as a TF SavedModel (jax2tf) beside it.

The scores are `acar_jax.api.Model.predict`'s: the model's logits in inference mode, then the prediction
function (pose softmax + sigmoid). Shapes are fixed at export except the batch, which may be symbolic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from acar_jax.inference.model import Model
from acar_jax.models.predictions import predict_scores

ARTIFACT = "model.jaxexport"
SIGNATURE = "signature.json"
LOADER_NAME = "load_exported.py"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
INPUT_NAMES = ("clips", "boxes", "box_mask", "valid_hw")

LOADER = '''"""Runs an acar-jax serving artifact with jax alone (no acar_jax, no flax).

  python load_exported.py MODEL_DIR INPUTS.npz SCORES.npy
INPUTS.npz holds clips [B,T,H,W,3] float32, boxes [B,N,4] float32, box_mask [B,N] bool, valid_hw [B,2] int32
(MODEL_DIR/signature.json gives T, H, W, N and the preprocessing); SCORES.npy gets [B,N,K] float32 scores.
"""
import os
import sys

import numpy as np
from jax import export


def load(model_dir):
    """The deserialized jax.export.Exported; call it as exported.call(clips, boxes, box_mask, valid_hw)."""
    with open(os.path.join(model_dir, "model.jaxexport"), "rb") as f:
        return export.deserialize(bytearray(f.read()))


if __name__ == "__main__":
    model_dir, inputs, output = sys.argv[1:4]
    arrays = np.load(inputs)
    scores = load(model_dir).call(*(arrays[k] for k in ("clips", "boxes", "box_mask", "valid_hw")))
    np.save(output, np.asarray(scores, np.float32))
'''


def scores_fn(model: Model):
    """scores(params, batch_stats, clips, boxes, box_mask, valid_hw) -> [B, N, K] float32: `predict` with the
    trained weights as arguments (a SavedModel keeps them as variables) and the rng state (unused in inference
    mode) a constant."""
    forward, rng_state = model.forward, model.weights[2]
    train = model.config.train

    def scores(params, batch_stats, clips, boxes, box_mask, valid_hw):
        logits = forward(params, batch_stats, rng_state, clips, boxes, box_mask, valid_hw)
        return predict_scores(logits, pose_softmax=bool(train.pose_softmax),
                              num_pose_classes=int(train.num_pose_classes)).astype(jnp.float32)
    return scores


def inference_fn(model: Model):
    """predict(clips, boxes, box_mask, valid_hw) -> [B, N, K] float32 scores with the model's weights as
    constants of the traced function."""
    scores, (params, batch_stats, _) = scores_fn(model), model.weights
    return lambda clips, boxes, box_mask, valid_hw: scores(params, batch_stats, clips, boxes, box_mask, valid_hw)


def input_specs(*, batch: int | None, frames: int, height: int, width: int,
                max_boxes: int) -> tuple[jax.ShapeDtypeStruct, ...]:
    """(clips, boxes, box_mask, valid_hw) shapes and dtypes; `batch` None: the symbolic dimension "b"."""
    b = export.symbolic_shape("b")[0] if batch is None else batch
    return (jax.ShapeDtypeStruct((b, frames, height, width, 3), jnp.float32),
            jax.ShapeDtypeStruct((b, max_boxes, 4), jnp.float32),
            jax.ShapeDtypeStruct((b, max_boxes), jnp.bool_),
            jax.ShapeDtypeStruct((b, 2), jnp.int32))


def export_model(model: Model, *, batch: int | None, frames: int, height: int, width: int, max_boxes: int,
                 platforms: Sequence[str] = ("cpu",)) -> export.Exported:
    """Exports `inference_fn(model)` for the named shapes (`batch` None: symbolic). ValueError naming the
    argument for a shape the model cannot take."""
    for name, value in (("--frames", frames), ("--height", height), ("--width", width), ("--max_boxes", max_boxes)):
        if value < 1:
            raise ValueError(f"{name}: expected a positive size, got {value}")
    if batch is not None and batch < 1:
        raise ValueError(f"--batch: expected a positive size or 'b' (symbolic), got {batch}")
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown or not platforms:
        raise ValueError(f"--platforms: expected a comma-separated subset of {', '.join(PLATFORMS)}, got "
                         f"{','.join(platforms)}")
    specs = input_specs(batch=batch, frames=frames, height=height, width=width, max_boxes=max_boxes)
    try:
        return export.export(jax.jit(inference_fn(model)), platforms=tuple(platforms))(*specs)
    except ValueError as e:
        raise ValueError(f"--frames {frames} --height {height} --width {width}: the model cannot take clips of "
                         f"this shape: {e}") from None
    except Exception as e:  # noqa: BLE001 (shape polymorphism limits surface as various jax errors)
        if batch is None:
            raise ValueError(f"--batch b: this model cannot be exported with a symbolic batch ({type(e).__name__}:"
                             f" {str(e).splitlines()[0]}); give a fixed --batch") from None
        raise


def write_artifact(exported: export.Exported, output: str, signature: dict) -> list[str]:
    """Writes the artifact, its signature and the loader into `output`; returns the paths."""
    os.makedirs(output, exist_ok=True)
    paths = [os.path.join(output, n) for n in (ARTIFACT, LOADER_NAME)]
    with open(paths[0], "wb") as f:
        f.write(exported.serialize())
    with open(paths[1], "w") as f:
        f.write(LOADER)
    return [paths[0], write_signature(output, signature), paths[1]]


def write_signature(output: str, signature: dict) -> str:
    """Writes `output`/signature.json; returns its path."""
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, SIGNATURE)
    with open(path, "w") as f:
        json.dump(signature, f, indent=1)
        f.write("\n")
    return path


def signature_of(model: Model, exported: export.Exported, class_ids: Sequence[int],
                 class_names: Sequence[str], artifacts: Sequence[str] = (ARTIFACT,)) -> dict:
    """What a server needs besides the artifact: shapes, classes and the clip preprocessing. `artifacts`: the
    files or folders written beside it (model.jaxexport, saved_model)."""
    data = model.config.data
    return {
        "artifacts": list(artifacts),
        "inputs": {name: {"shape": [str(d) for d in aval.shape], "dtype": str(aval.dtype)}
                   for name, aval in zip(INPUT_NAMES, exported.in_avals,
                                         strict=True)},
        "output": {"scores": {"shape": [str(d) for d in exported.out_avals[0].shape], "dtype": "float32"}},
        "platforms": list(exported.platforms),
        "classes": [{"id": int(i), "name": n} for i, n in zip(class_ids, class_names, strict=True)],
        "preprocessing": {"fps": int(data.fps), "frame_height": 340, "num_frames": int(data.num_frames),
                          "frame_stride": int(data.frame_stride), "short_side": int(data.eval_scales[0]),
                          "pixel_scale": float(data.pixel_scale), "mean": list(map(float, data.mean)),
                          "std": list(map(float, data.std)),
                          "boxes": "x1,y1,x2,y2 normalised to each clip's unpadded frame; clips zero-padded "
                                   "bottom/right after normalisation, valid_hw = unpadded size"},
    }


def random_inputs(exported: export.Exported | Sequence[jax.ShapeDtypeStruct], batch: int,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Valid random inputs for the exported shapes, or those of `input_specs` (tests and the export tool's
    self-check)."""
    rng = np.random.default_rng(seed)
    specs = exported.in_avals if isinstance(exported, export.Exported) else exported
    _, t, h, w, _ = specs[0].shape
    n = specs[1].shape[1]
    xy = rng.uniform(0, 0.5, (batch, n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (batch, n, 2))], -1).astype(np.float32)
    mask = np.zeros((batch, n), bool)
    mask[:, : max(1, n // 2)] = True
    return {"clips": rng.normal(size=(batch, t, h, w, 3)).astype(np.float32), "boxes": boxes, "box_mask": mask,
            "valid_hw": np.tile(np.asarray([[h, w]], np.int32), (batch, 1))}
