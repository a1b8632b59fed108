"""tools/detect_persons.py on a generated video, with a tiny ONNX detector whose output is fixed boxes: it writes
an AVA proposal CSV of the demo's keyframes that the demo (config.demo.boxes_csv) and evaluation
(config.data.val_proposals) read, resumes without repeating a keyframe, and the demo without a boxes CSV runs
the same configured detector to the same actions.csv."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from acar_jax.inference import demo, keyframe_detection
from acar_jax.training.evaluate import evaluate_checkpoint
from data_pipelines import frame_extraction, synthetic
from tests.helpers import configs, paths
from tests.helpers import tiny_models as h
from tests.helpers.onnx_models import write_fixed_output_model
from tests.helpers.videos import write_mp4

TOOL = paths.REPO / "tools" / "detect_persons.py"

H, W, FPS = 64, 96, 30
# YOLO-style [1, N, 6] rows in the 64x64 model input: two people and one box of another class
ONNX_ROWS = [[8, 16, 30, 50, 0.95, 0], [34, 12, 60, 48, 0.9, 0], [0, 0, 10, 10, 0.99, 2]]


def _write_video(path, num_frames: int) -> None:
    def frame(i: int) -> np.ndarray:
        img = np.full([H, W, 3], 128, np.uint8)
        img[20:40, i % 70: i % 70 + 20] = 30
        return img
    write_mp4(path, (frame(i) for i in range(num_frames)), FPS, codec="libx264", options={"crf": "10"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("detect_persons")
    config = configs.small_detector()
    h.write_initial_checkpoint(config, str(tmp / "run"))
    root = tmp / "data"
    root.mkdir()
    (root / "labels.pbtxt").write_text(synthetic.label_map_text())
    config.data.root, config.data.label_map, config.data.dataset = str(root), "labels.pbtxt", "ava"
    _write_video(tmp / "clip.mp4", 2 * FPS)
    config.demo.detector = "onnx"
    config.demo.detector_weights = write_fixed_output_model(tmp / "fixed.onnx", np.asarray([ONNX_ROWS]))
    config.demo.video, config.demo.top_k = str(tmp / "clip.mp4"), 1
    return config, tmp


def _rows(path) -> dict[tuple, float]:
    out = {}
    for line in open(path):
        f = line.strip().split(",")
        out[(f[0], int(f[1]), *(round(float(v), 3) for v in f[2:6]), int(f[6]))] = float(f[7])
    return out


def test_the_cli_writes_the_demo_keyframes_boxes_and_resumes(setup, tmp_path):
    config, tmp = setup
    out = tmp_path / "boxes.csv"
    command = [sys.executable, str(TOOL), f"--config={paths.REPO / 'configs' / 'default.py'}",
               f"--input={config.demo.video}", f"--output={out}", "--config.demo.detector=onnx",
               f"--config.demo.detector_weights={config.demo.detector_weights}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "clip: 4 boxes at 2 keyframes (0 done before)" in proc.stdout
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert [(r[0], r[1], r[6]) for r in rows] == [("clip", "0", ""), ("clip", "0", ""), ("clip", "1", ""),
                                                   ("clip", "1", "")]
    boxes = np.asarray([[float(v) for v in r[2:6]] for r in rows])
    assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    np.testing.assert_allclose([float(r[7]) for r in rows], [0.95, 0.9, 0.95, 0.9], atol=1e-6)
    assert (tmp_path / "boxes.csv.keyframes").read_text() == "clip,0\nclip,1\n"
    before = out.read_text()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "clip: all 2 keyframes already in" in proc.stdout, proc.stderr[-2000:]
    assert out.read_text() == before


def test_resume_skips_keyframes_listed_with_or_without_people(setup, tmp_path):
    config, _ = setup
    out = tmp_path / "boxes.csv"
    out.write_text("clip,0,0.1,0.1,0.5,0.5,,0.9")               # keyframe 0 done (no trailing newline)
    (tmp_path / "boxes.csv.keyframes").write_text("other,3\n")
    assert keyframe_detection.detect_persons(config, [config.demo.video], str(out)) == 2
    lines = out.read_text().splitlines()
    assert lines[0] == "clip,0,0.1,0.1,0.5,0.5,,0.9" and len(lines) == 3
    assert {line.split(",")[1] for line in lines[1:]} == {"1"}
    assert (tmp_path / "boxes.csv.keyframes").read_text() == "other,3\nclip,1\n"
    (tmp_path / "bad.csv").write_text("clip,zero,0.1,0.1,0.5,0.5,,0.9\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: expected video_id,timestamp,"):
        keyframe_detection.detect_persons(config, [config.demo.video], str(tmp_path / "bad.csv"))


def test_a_frame_folder_is_read_from_the_configs_start_second(setup, tmp_path):
    config, _ = setup
    frames = tmp_path / "vid_a"
    frames.mkdir()
    frame_extraction.extract_frames(config.demo.video, str(frames), fps=FPS, height=340)
    c = configs.small_detector()
    c.data.update(dict(config.data))
    c.demo.update(dict(config.demo))
    c.data.start_second = 900
    keyframe_detection.detect_persons(c, [str(frames)], str(tmp_path / "boxes.csv"))
    assert [line.split(",")[:2] for line in (tmp_path / "boxes.csv").read_text().splitlines()] == \
        [["vid_a", "900"]] * 2 + [["vid_a", "901"]] * 2
    with pytest.raises(FileNotFoundError, match="--input: no such video or frame folder: '/nope.mp4'"):
        keyframe_detection.detect_persons(c, ["/nope.mp4"], str(tmp_path / "boxes.csv"))


def test_the_demo_and_eval_read_the_csv_and_the_demo_detector_gives_the_same_actions(setup, tmp_path):
    config, tmp = setup
    boxes_csv = tmp_path / "boxes.csv"
    keyframe_detection.detect_persons(config, [config.demo.video], str(boxes_csv))
    workdir = str(tmp / "run")

    def run_demo(**fields):
        c = configs.small_detector()
        c.data.update(dict(config.data))
        c.demo.update({**dict(config.demo), **fields})
        return demo.run_demo(c, workdir)

    from_csv = run_demo(boxes_csv=str(boxes_csv), output_dir=str(tmp_path / "from_csv"))
    detected = run_demo(boxes_csv="", output_dir=str(tmp_path / "detected"))
    assert from_csv.boxes == detected.boxes == 4
    want, got = _rows(from_csv.actions_csv), _rows(detected.actions_csv)
    assert sorted(got) == sorted(want) and len(got) == 4 * 9
    np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)], atol=1e-5, rtol=0)

    # --mode=eval with the CSV as its proposals, on the frames tools/extract_frames.py writes for this video
    eval_config = configs.small_detector()
    eval_config.data.update(dict(config.data))
    frames = tmp / "data" / "frames" / "clip"
    frames.mkdir(parents=True, exist_ok=True)
    frame_extraction.extract_frames(config.demo.video, str(frames), start_second=0, fps=FPS, height=340)
    gt = [",".join([*line.split(",")[:6], "1", str(i)]) for i, line in enumerate(boxes_csv.read_text().splitlines())]
    (tmp / "data" / "gt.csv").write_text("\n".join(gt) + "\n")
    eval_config.data.update(dict(start_second=0, val_csv="gt.csv", val_proposals=str(boxes_csv), exclusions=""))
    metrics = evaluate_checkpoint(eval_config, workdir)
    evaluated = _rows(metrics["eval/csv"])
    assert sorted(evaluated) == sorted(want)
    np.testing.assert_allclose([evaluated[k] for k in sorted(want)], [want[k] for k in sorted(want)], atol=1e-5,
                               rtol=0)
