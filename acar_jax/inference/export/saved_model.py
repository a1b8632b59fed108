"""The serving function as a TF SavedModel, for servers that run TensorFlow (TF Serving, tf.saved_model.load)
and neither jax nor acar_jax.

  model_dir/saved_model/          signature serving_default(clips, boxes, box_mask, valid_hw) -> {"scores"}:
                                  serving.scores_fn converted by jax2tf, weights (params, batch statistics)
                                  as TF variables in saved_model/variables/
  model_dir/load_saved_model.py   a standalone loader (tensorflow + numpy only): see LOADER below

jax2tf in the pinned jax has one lowering, native serialization: the SavedModel holds the function's StableHLO
in an XlaCallModule op, compiled by TensorFlow's XLA on a device of one of the platforms it was lowered for
(`platforms`, e.g. ("cpu", "cuda") to serve on either). The older graph serialization (TF ops, portable to
TFLite or TF.js) is gone: `native_serialization=False` is accepted with a DeprecationWarning and ignored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from acar_jax.inference.export.serving import INPUT_NAMES, input_specs, scores_fn
from acar_jax.inference.model import Model

DIRECTORY = "saved_model"
LOADER_NAME = "load_saved_model.py"
SIGNATURE_KEY = "serving_default"

LOADER = '''"""Runs an acar-jax SavedModel with TensorFlow alone (no jax, no acar_jax).

  python load_saved_model.py MODEL_DIR INPUTS.npz SCORES.npy
INPUTS.npz holds clips [B,T,H,W,3] float32, boxes [B,N,4] float32, box_mask [B,N] bool, valid_hw [B,2] int32
(MODEL_DIR/signature.json gives T, H, W, N and the preprocessing); SCORES.npy gets [B,N,K] float32 scores.
"""
import os
import sys

import numpy as np
import tensorflow as tf


def load(model_dir):
    """The loaded SavedModel (keep it alive while calling): .signatures["serving_default"](**inputs)["scores"]."""
    return tf.saved_model.load(os.path.join(model_dir, "saved_model"))


if __name__ == "__main__":
    model_dir, inputs, output = sys.argv[1:4]
    arrays, model = np.load(inputs), load(model_dir)
    serve = model.signatures["serving_default"]
    scores = serve(**{k: tf.constant(arrays[k]) for k in ("clips", "boxes", "box_mask", "valid_hw")})["scores"]
    np.save(output, scores.numpy().astype(np.float32))
'''


def _tf_spec(spec: jax.ShapeDtypeStruct, name: str) -> tf.TensorSpec:
    """A symbolic dimension becomes None (any size)."""
    shape = [d if isinstance(d, int) else None for d in spec.shape]
    return tf.TensorSpec(shape, tf.as_dtype(np.dtype(spec.dtype)), name=name)


def write_saved_model(model: Model, output: str, *, batch: int | None, frames: int, height: int, width: int,
                      max_boxes: int, platforms: Sequence[str] = ("cpu",)) -> list[str]:
    """Writes `output`/saved_model (the scores of `model` for the named shapes, `batch` None: any batch) and
    its loader; returns their paths. Check the shapes with serving.export_model first: it names the argument
    a model cannot take."""
    params, batch_stats, _ = model.weights
    leaves, treedef = jax.tree_util.tree_flatten((params, batch_stats))
    scores = scores_fn(model)

    def scores_of_leaves(weights, clips, boxes, box_mask, valid_hw):
        p, s = jax.tree_util.tree_unflatten(treedef, weights)
        return scores(p, s, clips, boxes, box_mask, valid_hw)

    inputs_poly = ["b, ..."] * 4 if batch is None else [None] * 4     # the leading dimension symbolic: any batch
    converted = jax2tf.convert(scores_of_leaves, with_gradient=False, polymorphic_shapes=[None, *inputs_poly],
                               native_serialization_platforms=tuple(platforms))
    module = tf.Module()
    module.weights = [tf.Variable(np.asarray(x), trainable=False, name=f"w{i}") for i, x in enumerate(leaves)]
    specs = input_specs(batch=batch, frames=frames, height=height, width=width, max_boxes=max_boxes)

    @tf.function(input_signature=[_tf_spec(s, n) for s, n in zip(specs, INPUT_NAMES, strict=True)],
                 autograph=False)
    def serve(clips, boxes, box_mask, valid_hw):
        # list(): tf.Module wraps its list attribute in a ListWrapper, which jax's tree flattening takes for a leaf
        return {"scores": converted(list(module.weights), clips, boxes, box_mask, valid_hw)}

    module.serve = serve
    path = os.path.join(output, DIRECTORY)
    tf.saved_model.save(module, path, signatures={SIGNATURE_KEY: serve.get_concrete_function()})
    loader = os.path.join(output, LOADER_NAME)
    with open(loader, "w") as f:
        f.write(LOADER)
    return [path, loader]


def run_saved_model(output: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The SavedModel's scores on `inputs` (the export tool's self-check)."""
    loaded = tf.saved_model.load(os.path.join(output, DIRECTORY))
    serve = loaded.signatures[SIGNATURE_KEY]
    return serve(**{k: tf.constant(inputs[k]) for k in INPUT_NAMES})["scores"].numpy()
