"""End to end against the reference's evaluation: the same JPEG frames on disk, the same detections and the same
weights give, through the `Evaluator` (our tf.data pipeline, bucketing, jitted model, fusion, CSV writer), the
result CSV the reference's val loop writes (oracle: tests/helpers/reference_val_loop.py over the torch model
oracle), row for row within each keyframe: boxes to 1e-3, scores to 2e-3 (a '%.3f' rounding step).

Three videos of different frame sizes at height 340 (4:3, 16:9 and square, as extracted by the reference's
ffmpeg command) are evaluated in one run at two views (short side 64, and its flip) with a tiny SlowFast + ACAR
model and the reference's window (32 frames at stride 2 around the keyframe). Every clip is compiled at its own
exact size: no clip is padded, as the reference runs one clip per GPU.

Keyframe order is not compared: the reference's CSV follows its DistributedSampler's permutation per GPU,
ours the sorted records; the evaluator groups rows by keyframe.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from acar_jax.evaluation import evaluator
from acar_jax.interop.torch_reference import heads as torch_heads
from acar_jax.interop.torch_reference import slowfast as torch_slowfast
from configs import default
from data_pipelines import ava_files
from tests.helpers import paths, reference_val_loop
from tests.models.test_detector import abstract_detector

ROOT = paths.REPO
LABEL_MAP = paths.AVA_LABEL_MAP
FPS, START = 30, 900
# video id -> (frame height, width, keyframe seconds); AVA's ids may start with '-' or '_'.
VIDEOS = {"-4x3video": (340, 453, (902, 903)), "_16x9video": (340, 604, (902,)), "square": (340, 340, (903,))}
# LFB-style detections: video,time,x1,y1,x2,y2,(empty action),score; the 0.85 threshold keeps the first ones.
DETECTIONS = """\
-4x3video,0902,0.102,0.151,0.433,0.902,,0.998
-4x3video,0902,0.500,0.100,0.930,0.850,,0.850
-4x3video,0902,0.600,0.200,0.700,0.300,,0.849
-4x3video,0903,0.250,0.050,0.750,0.980,,0.912
_16x9video,0902,0.013,0.200,0.250,0.777,,0.970
_16x9video,0902,0.400,0.310,0.620,1.000,,0.901
_16x9video,0902,0.700,0.000,0.995,0.600,,0.880
square,0903,0.100,0.100,0.600,0.700,,0.990
square,0904,0.100,0.100,0.600,0.700,,0.700
"""
GT = """\
-4x3video,0902,0.100,0.150,0.430,0.900,12,0
-4x3video,0903,0.250,0.050,0.750,0.980,17,1
_16x9video,0902,0.010,0.200,0.250,0.780,11,0
square,0903,0.100,0.100,0.600,0.700,80,0
"""


def _write_frames(folder: Path, height: int, width: int, keyframes, rng) -> None:
    """image_%06d.jpg from 1 to the last frame any keyframe reads; the frames read get distinct smooth content
    (a random low-resolution pattern, bicubically enlarged), the others are copies."""
    folder.mkdir(parents=True)
    mids = [(t - START) * FPS + 1 for t in keyframes]
    read = {m + d for m in mids for d in range(-32, 31, 2)}
    last = max(read) + 1
    filler = folder / "filler.jpg"
    Image.new("RGB", (width, height), (90, 100, 110)).save(filler, quality=90)
    for i in range(1, last + 1):
        path = folder / f"image_{i:06d}.jpg"
        if i in read:
            small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path, quality=90)
        else:
            shutil.copyfile(filler, path)
    filler.unlink()


def _data_root(tmp_path: Path) -> Path:
    root = tmp_path / "ava"
    rng = np.random.default_rng(0)
    for video, (h, w, keyframes) in VIDEOS.items():
        _write_frames(root / "frames" / video, h, w, keyframes, rng)
    shutil.copyfile(LABEL_MAP, root / LABEL_MAP.name)
    (root / "ava_val_v2.2.csv").write_text(GT)
    (root / "detections_val.csv").write_text(DETECTIONS)
    return root


def _config(root: Path):
    """The tiny model (configs/default.py) on the 60 AVA classes, with the R50 reference's data settings."""
    cfg = default.get_config()
    cfg.model.num_classes = 60
    cfg.train.num_pose_classes = 13
    data = cfg.data
    data.dataset, data.root, data.fps, data.start_second = "ava", str(root), FPS, START
    data.label_map = LABEL_MAP.name
    data.val_csv, data.val_proposals, data.val_proposal_threshold = "ava_val_v2.2.csv", "detections_val.csv", 0.85
    data.exclusions = ""
    data.num_frames, data.frame_stride = 32, 2          # ref: TemporalCenterCrop(64, 2)
    data.short_side, data.eval_scales, data.eval_flip = 64, (64,), True
    data.pixel_scale, data.mean, data.std = 255.0, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
    data.box_buckets = (4,)
    cfg.model.head.depth = 1                            # one HR2O block: the same code path, a faster compile
    data.num_parallel_calls = 2
    cfg.eval_batch_size = 2
    cfg.eval_csv_decimals = 3
    return cfg


def test_evaluator_writes_the_reference_val_loops_csv(tmp_path):
    root = _data_root(tmp_path)
    cfg = _config(root)
    backbone = torch_slowfast.randomize_(torch_slowfast.from_backbone_config(cfg.model.backbone), 0)
    head = torch_heads.randomize_(torch_heads.from_model_config(
        cfg.model, backbone.slow_inplanes + backbone.fast_inplanes), 0)
    model = abstract_detector(cfg.model)
    torch_slowfast.load_torch_state_dict(model.backbone, backbone.state_dict())
    torch_heads.load_head_state_dict(model.head, head.state_dict())
    forward = nnx.jit(lambda m, *a: m(*a))
    shapes = []

    def logits_fn(clips, boxes, box_mask, valid_hw):
        shapes.append((clips.shape, boxes.shape))
        assert (np.asarray(valid_hw) == np.asarray(clips.shape[2:4])).all(), "an eval clip was padded"
        return np.asarray(forward(model, *map(jnp.asarray, (clips, boxes, box_mask, valid_hw))))

    metrics = evaluator.Evaluator(cfg, str(tmp_path / "run")).evaluate(logits_fn, step=0)
    # Resized sizes at short side 64: 64x85 (340x453), 64x113 (340x604), 64x64: one program each, both views.
    assert {s[0][2:4] for s in shapes} == {(64, 85), (64, 113), (64, 64)}
    assert len(set(shapes)) == 3

    label_map = ava_files.read_label_map(str(LABEL_MAP))
    samples = reference_val_loop.samples_from_detections(str(root / "detections_val.csv"), 0.85, fps=FPS,
                                                         start_second=START)
    want = reference_val_loop.val_loop_csv(
        samples, str(root / "frames"), backbone, head, views=[(64, False), (64, True)],
        class_ids=list(label_map.ids), num_frames=32, step=2, norm_value=255.0, mean=(0.45,) * 3,
        std=(0.225,) * 3)
    got = Path(metrics["csv"]).read_text().splitlines()
    assert len(got) == len(want) == 7 * 60

    def by_keyframe(lines):
        blocks: dict[tuple[str, str], list[list[str]]] = {}
        for line in lines:
            row = line.split(",")
            blocks.setdefault((row[0], row[1]), []).append(row)
        return blocks

    got_blocks, want_blocks = by_keyframe(got), by_keyframe(want)
    assert set(got_blocks) == set(want_blocks) == {("-4x3video", "902"), ("-4x3video", "903"),
                                                   ("_16x9video", "902"), ("square", "903")}
    worst_box = worst_score = 0.0
    for key, want_rows in want_blocks.items():
        got_rows = got_blocks[key]
        assert len(got_rows) == len(want_rows), key
        for g, w in zip(got_rows, want_rows, strict=True):
            assert g[6] == w[6], (key, g, w)                         # label-map order, box-major
            assert all(len(v.split(".")[1]) == 3 for v in g[2:6] + g[7:]), g   # '%.3f' as the reference
            worst_box = max(worst_box, np.abs(np.float64(g[2:6]) - np.float64(w[2:6])).max())
            worst_score = max(worst_score, abs(float(g[7]) - float(w[7])))
    print(f"max |box diff| {worst_box:.2g}, max |score diff| {worst_score:.2g} over {len(got)} rows")
    assert worst_box <= 1e-3 + 1e-12 and worst_score <= 2e-3 + 1e-12
    assert np.mean([g == w for k in want_blocks for g, w in zip(got_blocks[k], want_blocks[k], strict=True)]) > 0.9
    assert os.path.exists(metrics["csv"]) and 0.0 <= metrics["mAP"] <= 1.0
