"""The demo's person detectors behind one interface, chosen by `config.demo.detector`:

  "hog"          OpenCV's HOG + linear SVM people detector (detector_hog.py; weights inside OpenCV, no download;
                 weak: upright, whole, walking-size people), the default so that nothing downloads;
  "torchvision"  torchvision's COCO Faster R-CNN R50-FPN (detector_torchvision.py; needs torch, weights from
                 config.demo.detector_weights or the torch hub cache);
  "onnx"         a YOLO-style ONNX export run by onnxruntime (detector_onnx.py; the file in detector_weights).

Every detector returns `Detections` (detections.py): normalised x1y1x2y2 boxes in [0, 1] (pixels / image size,
clamped to the image, boxes with no area left dropped), scores >= config.demo.detector_threshold, greedy NMS at
config.demo.detector_nms_iou, best first. One convention for all, so a boxes CSV written from any of them
(tools/detect_persons.py) reads back the same in the demo and in evaluation.
"""

from __future__ import annotations

from typing import Protocol

import ml_collections
import numpy as np

from acar_jax.inference.detections import Detections

DETECTORS = ("hog", "torchvision", "onnx")


class PersonDetector(Protocol):
    """RGB uint8 [H, W, 3] image -> Detections (the demo and tools/detect_persons.py call only this)."""
    name: str

    def detect(self, image: np.ndarray) -> Detections: ...


def create_detector(demo: ml_collections.ConfigDict) -> PersonDetector:
    """The detector named by config.demo.detector, with its threshold and NMS IoU (imports its backend only)."""
    name = str(demo.detector)
    threshold, nms_iou = float(demo.detector_threshold), float(demo.detector_nms_iou)
    if not 0.0 <= nms_iou <= 1.0:
        raise ValueError(f"config.demo.detector_nms_iou: expected an IoU in [0, 1], got {nms_iou}")
    if name == "hog":
        from acar_jax.inference.detector_hog import HogDetector  # noqa: PLC0415 (OpenCV only for this one)
        return HogDetector(threshold=threshold, nms_iou=nms_iou)
    if name == "torchvision":
        from acar_jax.inference.detector_torchvision import TorchvisionDetector  # noqa: PLC0415 (torch: optional)
        return TorchvisionDetector.from_weights(str(demo.detector_weights), threshold=threshold, nms_iou=nms_iou)
    if name == "onnx":
        from acar_jax.inference.detector_onnx import OnnxDetector  # noqa: PLC0415 (onnxruntime: optional)
        if not demo.detector_weights:
            raise ValueError("config.demo.detector_weights is empty: the onnx detector needs the path of a "
                             "YOLO-style .onnx export (docs/serving.md lists the output layouts it reads)")
        return OnnxDetector(str(demo.detector_weights), threshold=threshold, nms_iou=nms_iou)
    raise ValueError(f"config.demo.detector: expected one of {', '.join(DETECTORS)}, got {name!r}")
