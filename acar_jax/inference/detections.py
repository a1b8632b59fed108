"""Person detections in the one convention of every detector (acar_jax/inference/person_detector.py):
normalised x1y1x2y2 boxes in [0, 1], thresholded, NMS'd, best first; and the box arithmetic that makes them."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Detections:
    """People found in one image, best first."""
    boxes: np.ndarray      # [n, 4] float64 normalised x1y1x2y2 in [0, 1]
    scores: np.ndarray     # [n] float64

    def __len__(self) -> int:
        return int(self.scores.shape[0])



def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1y1x2y2 box with each row of `boxes` [n, 4]."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first (ties: lower index first): a box is
    dropped when its IoU with a kept, better box is > `iou` (torchvision.ops.nms's rule)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou]
    return np.asarray(keep, np.int64)


def to_detections(boxes_px: np.ndarray, scores: np.ndarray, height: int, width: int, *, threshold: float,
                  nms_iou: float) -> Detections:
    """Pixel x1y1x2y2 boxes of an image of `height` x `width` -> Detections: normalised, clamped to [0, 1],
    boxes with no area left dropped, score >= threshold, then NMS at nms_iou."""
    boxes = np.asarray(boxes_px, np.float64).reshape(-1, 4) / np.asarray([width, height, width, height], np.float64)
    boxes = np.clip(boxes, 0.0, 1.0)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"person detector: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores >= threshold)
    boxes, scores = boxes[keep], scores[keep]
    kept = nms(boxes, scores, nms_iou)
    return Detections(boxes[kept].reshape(-1, 4), scores[kept])
