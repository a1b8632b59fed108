"""config.demo.detector = "torchvision": torchvision's Faster R-CNN R50-FPN trained on COCO (person = label 1).

torch and torchvision are optional (`pip install -r requirements-detect.txt`). The weights are a state dict
at config.demo.detector_weights, else torchvision's own file in the torch hub cache, which one command fetches:

    python -c "import torchvision; torchvision.models.detection.fasterrcnn_resnet50_fpn(weights='DEFAULT')"

Nothing is downloaded here: a missing file is an error naming that command. The model's own score threshold
and per-class NMS are set to config.demo.detector_threshold and detector_nms_iou, so the person boxes are
torchvision's own output for the image, normalised (to_detections' second NMS pass keeps them all).
"""

from __future__ import annotations

import os

import numpy as np

from acar_jax.inference.detections import Detections, to_detections

COCO_PERSON = 1
DOWNLOAD_COMMAND = ("python -c \"import torchvision; "
                    "torchvision.models.detection.fasterrcnn_resnet50_fpn(weights='DEFAULT')\"")


def _torch():
    try:
        import torch  # noqa: PLC0415
        import torchvision  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("config.demo.detector 'torchvision' needs torch and torchvision: "
                          "pip install -r requirements-detect.txt") from e
    return torch, torchvision


def hub_weights_path() -> str:
    """Where torchvision keeps its COCO Faster R-CNN R50-FPN weights in the torch hub cache."""
    torch, torchvision = _torch()
    url = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def build_model(**kwargs):
    """An untrained Faster R-CNN R50-FPN (no download); kwargs go to torchvision's constructor (min_size, ...)."""
    _, torchvision = _torch()
    return torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)


class TorchvisionDetector:
    """A torchvision detection model (eval mode) behind the PersonDetector interface."""
    name = "torchvision"

    def __init__(self, model, *, threshold: float, nms_iou: float, device: str = "cpu"):
        torch, _ = _torch()
        self.torch, self.device = torch, torch.device(device)
        self.model = model.eval().to(self.device)
        self.model.roi_heads.score_thresh = threshold
        self.model.roi_heads.nms_thresh = nms_iou
        self.threshold, self.nms_iou = threshold, nms_iou

    @classmethod
    def from_weights(cls, path: str, *, threshold: float, nms_iou: float) -> TorchvisionDetector:
        """The COCO model with the weights at `path` ("" = the torch hub cache), on the GPU when torch sees one."""
        torch, _ = _torch()
        where = path or hub_weights_path()
        if not os.path.isfile(where):
            field = f"config.demo.detector_weights: no such file: {path!r}" if path else \
                f"config.demo.detector 'torchvision': no weights in the torch hub cache ({where})"
            raise FileNotFoundError(f"{field}; fetch torchvision's COCO Faster R-CNN R50-FPN with: "
                                    f"{DOWNLOAD_COMMAND}")
        state = torch.load(where, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):    # a training-script checkpoint
            state = state["model"]
        model = build_model()
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{where}: not a Faster R-CNN R50-FPN state dict: {str(e).splitlines()[0]}") from None
        return cls(model, threshold=threshold, nms_iou=nms_iou, device="cuda" if torch.cuda.is_available() else "cpu")

    def raw(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The model's own output (boxes in pixels, labels, scores) for one RGB uint8 image."""
        torch = self.torch
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(self.device, torch.float32) / 255
        with torch.inference_mode():
            out = self.model([tensor])[0]
        return {k: v.cpu().numpy() for k, v in out.items()}

    def detect(self, image: np.ndarray) -> Detections:
        out = self.raw(image)
        person = out["labels"] == COCO_PERSON
        h, w = image.shape[:2]
        return to_detections(out["boxes"][person], out["scores"][person], h, w, threshold=self.threshold,
                             nms_iou=self.nms_iou)
