"""config.demo.detector = "onnx": a YOLO-style detector exported to ONNX, run by onnxruntime (optional:
`pip install -r requirements-detect.txt`); the .onnx file is config.demo.detector_weights.

Input: the graph's first input, float32 [1, 3, H, W] RGB in [0, 1]; H and W from the graph (640 x 640 where they
are symbolic). The image is letterboxed as Ultralytics does: scaled by r = min(H / h, W / w) (bilinear), centred,
padded with grey 114.
Output: the graph's first output, in pixels of that input, in one of two layouts:
  [N, 6] or [1, N, 6]   x1, y1, x2, y2, score, class per row (exports with NMS inside, e.g. YOLOv8/v10/v11
                        `end2end` / `nms=True`); person = class 0;
  [1, 4 + C, A]         the raw YOLOv8/v11 head (e.g. [1, 84, 8400] for COCO): cx, cy, w, h, then C class
                        scores per anchor; the person score is class 0's.
Person class 0 is COCO's 80-class order, which Ultralytics' exports use. Boxes are mapped back through the
letterbox, then thresholded, NMS'd and normalised by to_detections.
"""

from __future__ import annotations

import os

import numpy as np

from acar_jax.inference.detections import Detections, to_detections

PERSON_CLASS = 0
DEFAULT_INPUT_HW = (640, 640)
PAD_VALUE = 114


def _onnxruntime():
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("config.demo.detector 'onnx' needs onnxruntime: pip install -r requirements-detect.txt") \
            from e
    return onnxruntime


def letterbox(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """(float32 [1, 3, height, width] input in [0, 1], scale r, (pad left, pad top)) of an RGB uint8 image."""
    import cv2  # noqa: PLC0415 (a requirement of the project)
    h, w = image.shape[:2]
    r = min(height / h, width / w)
    new_w, new_h = round(w * r), round(h * r)
    left, top = (width - new_w) / 2, (height - new_h) / 2
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != (w, h) \
        else image
    canvas = np.full([height, width, 3], PAD_VALUE, np.uint8)
    y0, x0 = round(top - 0.1), round(left - 0.1)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = resized
    return canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255, r, (float(x0), float(y0))


def person_rows(output: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(x1y1x2y2 boxes [n, 4], person scores [n]) in input pixels from one of the two accepted layouts."""
    out = np.asarray(output, np.float64)
    if out.ndim == 3 and out.shape[0] == 1 and out.shape[2] == 6:
        out = out[0]
    if out.ndim == 2 and out.shape[1] == 6:
        person = out[:, 5].round() == PERSON_CLASS
        return out[person, :4], out[person, 4]
    if out.ndim == 3 and out.shape[0] == 1 and out.shape[1] > 4:
        cx, cy, w, h = out[0, :4]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return boxes, out[0, 4 + PERSON_CLASS]
    raise ValueError(f"{where}: output shape {list(out.shape)}: expected [N, 6] / [1, N, 6] (x1, y1, x2, y2, score, "
                     "class) or [1, 4 + C, A] (YOLOv8: cx, cy, w, h, C class scores)")


class OnnxDetector:
    """An ONNX person detector behind the PersonDetector interface."""
    name = "onnx"

    def __init__(self, path: str, *, threshold: float, nms_iou: float):
        ort = _onnxruntime()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config.demo.detector_weights: no such file: {path!r} (the onnx detector's "
                                    ".onnx export)")
        self.path, self.threshold, self.nms_iou = path, threshold, nms_iou
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        try:
            self._runner = ort.InferenceSession(path, providers=providers)
        except Exception as e:   # onnxruntime raises its own exception types for an unreadable graph
            raise ValueError(f"config.demo.detector_weights {path}: onnxruntime cannot load it: {e}") from None
        inp = self._runner.get_inputs()[0]
        if len(inp.shape) != 4:
            raise ValueError(f"{path}: input {inp.name!r} has shape {inp.shape}: expected [1, 3, H, W]")
        self.input_name = inp.name
        self.input_hw = tuple(d if isinstance(d, int) and d > 0 else DEFAULT_INPUT_HW[i]
                              for i, d in enumerate(inp.shape[2:]))

    def detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        tensor, r, (left, top) = letterbox(image, *self.input_hw)
        output = self._runner.run(None, {self.input_name: tensor})[0]
        boxes, scores = person_rows(output, self.path)
        boxes = (boxes - np.asarray([left, top, left, top])) / r
        return to_detections(boxes, scores, h, w, threshold=self.threshold, nms_iou=self.nms_iou)
