"""The demo's person detectors behind one interface (acar_jax/inference/person_detector.py): one box convention
(pixels -> normalised x1y1x2y2, clamped, thresholded, NMS'd, best first); torchvision's Faster R-CNN wrapper gives
torchvision's own boxes; an ONNX export's two accepted layouts map back through the letterbox. Tiny untrained
models only: nothing downloads."""

import copy
import os
import re

import ml_collections
import numpy as np
import pytest
import torch
import torchvision

from acar_jax.inference import detections, detector_onnx, detector_torchvision, person_detector
from acar_jax.inference.detector_hog import HogDetector
from configs import base
from tests.helpers.onnx_models import write_fixed_output_model


def _demo(**fields) -> ml_collections.ConfigDict:
    demo = base.get_demo_config()
    demo.update(fields)
    return demo


def test_pixel_boxes_become_normalised_clamped_thresholded_and_nms_best_first():
    h, w = 100, 200
    boxes_px = np.asarray([
        [20, 10, 100, 90],      # kept, second best
        [-10, -5, 40, 50],      # partly outside: clamped to the image
        [22, 12, 102, 92],      # IoU ~0.9 with the first, lower score: suppressed
        [210, 10, 260, 50],     # wholly right of the image: nothing left, dropped
        [120, 10, 190, 90],     # below the threshold
        [100, 20, 180, 80],     # overlaps the first a little (IoU 0): kept, best
    ], np.float64)
    scores = np.asarray([0.8, 0.6, 0.7, 0.99, 0.3, 0.9])
    found = detections.to_detections(boxes_px, scores, h, w, threshold=0.5, nms_iou=0.5)
    np.testing.assert_allclose(found.scores, [0.9, 0.8, 0.6])
    np.testing.assert_allclose(found.boxes, [[0.5, 0.2, 0.9, 0.8], [0.1, 0.1, 0.5, 0.9], [0.0, 0.0, 0.2, 0.5]])
    assert found.boxes.min() >= 0 and found.boxes.max() <= 1
    # a looser NMS keeps the near-duplicate
    assert len(detections.to_detections(boxes_px, scores, h, w, threshold=0.5, nms_iou=0.95)) == 4


def test_nms_keeps_what_torchvision_nms_keeps():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 80, [200, 2])
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, [200, 2])], axis=1)
    scores = rng.uniform(0, 1, 200)
    for iou in (0.3, 0.5, 0.7):
        want = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(detections.nms(boxes, scores, iou), want)


@pytest.fixture(scope="module")
def tiny_faster_rcnn():
    """Untrained Faster R-CNN R50-FPN at a 64-pixel input; the person logit raised so that its boxes are people.
    Tests take a deep copy (the wrapper sets the model's thresholds)."""
    torch.manual_seed(0)
    model = detector_torchvision.build_model(min_size=64, max_size=128)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += 6.0
    return model


def _image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, [h, w, 3], dtype=np.uint8)


def test_torchvision_wrapper_gives_torchvisions_own_person_boxes(tiny_faster_rcnn):
    model = copy.deepcopy(tiny_faster_rcnn)
    detector = detector_torchvision.TorchvisionDetector(model, threshold=0.0, nms_iou=0.5)
    image = _image()
    found = detector.detect(image)
    with torch.inference_mode():
        out = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    person = out["labels"] == 1
    want_boxes = out["boxes"][person].numpy() / np.asarray([96, 64, 96, 64])
    want_scores = out["scores"][person].numpy()
    assert len(found) == int(person.sum()) > 0
    np.testing.assert_allclose(found.boxes, want_boxes, atol=1e-5, rtol=0)
    np.testing.assert_allclose(found.scores, want_scores, atol=1e-5, rtol=0)
    # the config's threshold is the model's own score threshold
    high = float(np.median(want_scores))
    strict = detector_torchvision.TorchvisionDetector(copy.deepcopy(tiny_faster_rcnn), threshold=high,
                                                      nms_iou=0.5).detect(image)
    assert 0 < len(strict) < len(found) and strict.scores.min() >= high


def test_torchvision_weights_from_a_path_and_clear_errors_without_them(tiny_faster_rcnn, tmp_path, monkeypatch):
    model = copy.deepcopy(tiny_faster_rcnn)
    torch.save(model.state_dict(), tmp_path / "frcnn.pth")
    loaded = detector_torchvision.TorchvisionDetector.from_weights(str(tmp_path / "frcnn.pth"), threshold=0.0,
                                                                   nms_iou=0.5)
    assert loaded.device.type == "cpu"
    loaded.model.transform.min_size, loaded.model.transform.max_size = (64,), 128   # the tiny test size
    want = detector_torchvision.TorchvisionDetector(model, threshold=0.0, nms_iou=0.5).detect(_image())
    np.testing.assert_allclose(loaded.detect(_image()).boxes, want.boxes, atol=1e-6, rtol=0)

    with pytest.raises(FileNotFoundError, match=r"config.demo.detector_weights: no such file: '/nope.pth'; .*"
                                                r"fasterrcnn_resnet50_fpn\(weights='DEFAULT'\)"):
        person_detector.create_detector(_demo(detector="torchvision", detector_weights="/nope.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    hub_file = os.path.basename(torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url)
    assert hub_file.startswith("fasterrcnn_resnet50_fpn_coco-") and hub_file.endswith(".pth")
    assert detector_torchvision.hub_weights_path() == str(tmp_path / "hub" / "checkpoints" / hub_file)
    with pytest.raises(FileNotFoundError, match=r"no weights in the torch hub cache .*hub/checkpoints/"
                                                rf"{re.escape(hub_file)}\); fetch"):
        person_detector.create_detector(_demo(detector="torchvision"))
    torch.save({"backbone.nothing": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong.pth: not a Faster R-CNN R50-FPN state dict"):
        person_detector.create_detector(_demo(detector="torchvision", detector_weights=str(tmp_path / "wrong.pth")))


def test_onnx_rows_layout_maps_back_through_the_letterbox(tmp_path):
    # a 64x128 image letterboxed into 64x64: scale 0.5, 16 px of grey above and below
    rows = [[16, 24, 48, 40, 0.9, 0],       # a person
            [16, 24, 48, 40, 0.95, 3],      # another class: not a person
            [18, 25, 50, 41, 0.85, 0],      # a near-duplicate person: NMS
            [-8, 10, 10, 30, 0.7, 0],       # past the left edge: clamped
            [30, 30, 40, 40, 0.2, 0]]       # below the threshold
    path = write_fixed_output_model(tmp_path / "rows.onnx", np.asarray([rows]))
    found = detector_onnx.OnnxDetector(path, threshold=0.5, nms_iou=0.5).detect(_image(64, 128))
    np.testing.assert_allclose(found.boxes, [[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.15625, 0.4375]], atol=1e-6)
    np.testing.assert_allclose(found.scores, [0.9, 0.7], atol=1e-6)
    # [N, 6] without the batch axis reads the same
    flat = write_fixed_output_model(tmp_path / "flat.onnx", np.asarray(rows))
    again = detector_onnx.OnnxDetector(flat, threshold=0.5, nms_iou=0.5).detect(_image(64, 128))
    np.testing.assert_allclose(again.boxes, found.boxes)


def test_onnx_yolov8_layout_person_is_class_0(tmp_path):
    # [1, 4 + C, A] with C = 2 classes, A = 3 anchors: cx, cy, w, h, score of class 0, score of class 1
    head = np.asarray([[[32, 10, 50],       # cx
                        [32, 10, 50],       # cy
                        [32, 8, 10],        # w
                        [16, 8, 10],        # h
                        [0.8, 0.1, 0.6],    # person
                        [0.1, 0.9, 0.1]]])  # another class
    path = write_fixed_output_model(tmp_path / "v8.onnx", head, symbolic_input=True)
    detector = detector_onnx.OnnxDetector(path, threshold=0.5, nms_iou=0.5)
    assert detector.input_hw == (640, 640)          # symbolic input size: the YOLO default
    path = write_fixed_output_model(tmp_path / "v8_64.onnx", head)
    found = detector_onnx.OnnxDetector(path, threshold=0.5, nms_iou=0.5).detect(_image(64, 64))
    np.testing.assert_allclose(found.boxes, np.asarray([[16, 24, 48, 40], [45, 45, 55, 55]]) / 64, atol=1e-6)
    np.testing.assert_allclose(found.scores, [0.8, 0.6], atol=1e-6)


def test_onnx_unknown_layout_and_missing_file_say_what_was_expected(tmp_path):
    path = write_fixed_output_model(tmp_path / "bad.onnx", np.zeros([2, 3, 4]))
    with pytest.raises(ValueError, match=r"bad.onnx: output shape \[2, 3, 4\]: expected \[N, 6\] / \[1, N, 6\]"):
        detector_onnx.OnnxDetector(path, threshold=0.5, nms_iou=0.5).detect(_image())
    with pytest.raises(FileNotFoundError, match="config.demo.detector_weights: no such file: '/nope.onnx'"):
        person_detector.create_detector(_demo(detector="onnx", detector_weights="/nope.onnx"))
    with pytest.raises(ValueError, match="config.demo.detector_weights is empty: the onnx detector needs"):
        person_detector.create_detector(_demo(detector="onnx"))


def test_factory_builds_the_configured_detector_and_names_bad_fields(tmp_path):
    hog = person_detector.create_detector(_demo())
    assert isinstance(hog, HogDetector) and (hog.threshold, hog.nms_iou) == (0.5, 0.5)
    assert len(hog.detect(np.full([64, 96, 3], 128, np.uint8))) == 0
    path = write_fixed_output_model(tmp_path / "rows.onnx", np.asarray([[16, 24, 48, 40, 0.9, 0]]))
    onnx_detector = person_detector.create_detector(_demo(detector="onnx", detector_weights=path,
                                                          detector_threshold=0.95))
    assert onnx_detector.name == "onnx" and len(onnx_detector.detect(_image(64, 64))) == 0
    with pytest.raises(ValueError, match="config.demo.detector: expected one of hog, torchvision, onnx, got 'yolo'"):
        person_detector.create_detector(_demo(detector="yolo"))
    with pytest.raises(ValueError, match=r"config.demo.detector_nms_iou: expected an IoU in \[0, 1\], got 1.5"):
        person_detector.create_detector(_demo(detector_nms_iou=1.5))
