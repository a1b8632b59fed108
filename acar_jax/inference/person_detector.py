"""The demo's built-in person detector: OpenCV's HOG + linear SVM people detector (weights inside OpenCV, no
download). A weak detector (upright, whole, walking-size people; misses sitting, occluded and small people):
for real use give the demo better boxes, an AVA proposal CSV (e.g. the released Faster R-CNN detections, or any
detector's output written as `video_id,timestamp,x1,y1,x2,y2,,score` with timestamps in seconds of the video)
through config.demo.boxes_csv. Needs `pip install opencv-python-headless` (only for this fallback).
"""

from __future__ import annotations

import numpy as np


def detect_people(image: np.ndarray, *, max_side: int = 640) -> list[tuple[np.ndarray, float]]:
    """(normalised x1y1x2y2 box, SVM score squashed to (0, 1)) of each person found in an RGB uint8 image."""
    try:
        import cv2  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("the demo's built-in person detector needs OpenCV: pip install opencv-python-headless "
                          "(or give boxes with config.demo.boxes_csv)") from e
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale))) if scale < 1 else image
    hog = cv2.HOGDescriptor()
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
