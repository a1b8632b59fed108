"""config.demo.detector = "hog": OpenCV's HOG + linear SVM people detector (weights inside OpenCV, no download).
A weak detector (upright, whole, walking-size people; misses sitting, occluded and small people): for real use
pick "torchvision" or "onnx", or give the demo an AVA proposal CSV through config.demo.boxes_csv. Needs
`pip install opencv-python-headless` (a requirement of the project).
"""

from __future__ import annotations

import numpy as np

from acar_jax.inference.detections import Detections, to_detections


def detect_people(image: np.ndarray, *, max_side: int = 640) -> list[tuple[np.ndarray, float]]:
    """(normalised x1y1x2y2 box, SVM score squashed to (0, 1)) of each person found in an RGB uint8 image."""
    try:
        import cv2  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("the demo's HOG person detector needs OpenCV: pip install opencv-python-headless "
                          "(or give boxes with config.demo.boxes_csv)") from e
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale))) if scale < 1 else image
    hog = cv2.HOGDescriptor()
    win_w, win_h = hog.winSize
    if small.shape[0] < win_h or small.shape[1] < win_w:    # no window fits (and OpenCV 4.14 crashes on it)
        return []
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    rects, weights = hog.detectMultiScale(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), winStride=(8, 8),
                                          padding=(8, 8), scale=1.05)
    sh, sw = small.shape[:2]
    found = []
    for (x, y, bw, bh), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1),
                                      strict=True):
        box = np.clip(np.asarray([x / sw, y / sh, (x + bw) / sw, (y + bh) / sh], np.float64), 0, 1)
        found.append((box, float(1 / (1 + np.exp(-weight)))))
    return found


class HogDetector:
    """detect_people behind the PersonDetector interface (threshold on the squashed score, then NMS)."""
    name = "hog"

    def __init__(self, *, threshold: float, nms_iou: float):
        self.threshold, self.nms_iou = threshold, nms_iou

    def detect(self, image: np.ndarray) -> Detections:
        found = detect_people(image)
        boxes = np.asarray([b for b, _ in found], np.float64).reshape(-1, 4)
        scores = np.asarray([s for _, s in found], np.float64)
        return to_detections(boxes, scores, 1, 1, threshold=self.threshold, nms_iou=self.nms_iou)
