"""Tiny ONNX detectors for the tests: a graph built with onnx.helper whose output is a fixed tensor (the boxes
a YOLO-style export would give), so the onnx detector's plumbing is checked without any trained model."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write_fixed_output_model(path: str | os.PathLike, output: np.ndarray, *, input_hw: tuple[int, int] = (64, 64),
                             symbolic_input: bool = False) -> str:
    """An .onnx graph: input `images` [1, 3, H, W] (or [1, 3, "h", "w"]), output `output` (float32) as given."""
    value = np.asarray(output, np.float32)
    node = helper.make_node("Constant", [], ["output"], value=numpy_helper.from_array(value))
    shape = [1, 3, "h", "w"] if symbolic_input else [1, 3, *input_hw]
    graph = helper.make_graph([node], "fixed_detections",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(value.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return os.fspath(path)
