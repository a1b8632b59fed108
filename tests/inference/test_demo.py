"""acar_jax.inference.demo (run.py --mode=demo): with a boxes CSV, actions.csv equals --mode=eval's result CSV on
the same frames and boxes; annotated.mp4 keeps the input's frame count, size and fps and has the boxes at the right
pixels, held between keyframes; bad input gets one clear line naming the field, file or row."""

import os
import subprocess
import sys

import av
import numpy as np
import pytest

from acar_jax.inference import demo
from acar_jax.training.evaluate import evaluate_checkpoint
from data_pipelines import frame_extraction, synthetic
from tests.helpers import configs, paths
from tests.helpers import tiny_models as h
from tests.helpers.videos import write_mp4

REPO = str(paths.REPO)
H, W, FPS = 64, 96, 30
# two keyframes (seconds 0 and 1), one box each, at different places; the second keyframe has two boxes
BOXES = {0: [(0.10, 0.10, 0.40, 0.90)], 1: [(0.55, 0.20, 0.90, 0.95), (0.05, 0.30, 0.30, 0.80)]}


def _write_video(path, num_frames: int) -> None:
    """Flat grey frames with a dark moving square (something for the model to see)."""
    def frame(i: int) -> np.ndarray:
        img = np.full([H, W, 3], 128, np.uint8)
        img[20:40, i % 70: i % 70 + 20] = 30
        return img
    write_mp4(path, (frame(i) for i in range(num_frames)), FPS, codec="libx264", options={"crf": "10"})


def _boxes_csv(path, video_id: str) -> None:
    rows = [f"{video_id},{t},{','.join(f'{v:.3f}' for v in box)},,0.95" for t, boxes in BOXES.items()
            for box in boxes]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny default-model checkpoint, a 2 s video, its boxes CSV and a data root with the label map."""
    tmp = tmp_path_factory.mktemp("demo")
    config = configs.small_detector()
    h.write_initial_checkpoint(config, str(tmp / "run"))
    root = tmp / "data"
    root.mkdir()
    (root / "labels.pbtxt").write_text(synthetic.label_map_text())
    config.data.root, config.data.label_map, config.data.dataset = str(root), "labels.pbtxt", "ava"
    video = tmp / "clip.mp4"
    _write_video(video, 2 * FPS)
    _boxes_csv(tmp / "boxes.csv", "clip")
    config.demo.video, config.demo.boxes_csv = str(video), str(tmp / "boxes.csv")
    config.demo.output_dir, config.demo.top_k = str(tmp / "out"), 1
    return config, tmp


@pytest.fixture(scope="module")
def demo_run(setup):
    config, tmp = setup
    return demo.run_demo(config, str(tmp / "run")), config, tmp


def _rows(path) -> dict[tuple, float]:
    out = {}
    for line in open(path):
        f = line.strip().split(",")
        out[(f[0], int(f[1]), *(round(float(v), 3) for v in f[2:6]), int(f[6]))] = float(f[7])
    return out


def test_actions_csv_equals_eval_result_csv_on_the_same_frames_and_boxes(demo_run):
    result, config, tmp = demo_run
    # --mode=eval's path on the frames tools/extract_frames.py writes for this video (second 0 = frame 1)
    eval_config = configs.small_detector()
    eval_config.data.update(dict(config.data))
    frames = tmp / "data" / "frames" / "clip"
    frames.mkdir(parents=True)
    frame_extraction.extract_frames(config.demo.video, str(frames), start_second=0, fps=FPS, height=340)
    gt = [f"clip,{t},{','.join(f'{v:.3f}' for v in box)},1,{i}" for t, boxes in BOXES.items()
          for i, box in enumerate(boxes)]
    (tmp / "data" / "gt.csv").write_text("\n".join(gt) + "\n")
    eval_config.data.update(dict(start_second=0, val_csv="gt.csv", val_proposals=str(tmp / "boxes.csv"),
                                 exclusions=""))
    metrics = evaluate_checkpoint(eval_config, str(tmp / "run"))
    want, got = _rows(metrics["eval/csv"]), _rows(result.actions_csv)
    assert len(got) == 3 * 9 and sorted(got) == sorted(want)
    np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)], atol=1e-5, rtol=0)
    assert result.keyframes == 2 and result.boxes == 3


def _decode(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(s)]
        return np.stack(frames), s.average_rate


def test_annotated_video_keeps_the_input_and_draws_boxes_held_between_keyframes(demo_run):
    result, config, _ = demo_run
    src, src_rate = _decode(config.demo.video)
    out, out_rate = _decode(result.annotated)
    assert out.shape == src.shape and out_rate == src_rate == FPS

    def red_on_right_edge(frame, box) -> bool:
        """The box's right edge (2 px, drawn inward) is red (PALETTE[0]) below its text, at 3/4 height."""
        x = round(box[2] * W) - 1
        y = round((box[1] + 3 * (box[3] - box[1]) / 4) * H)
        patch = frame[y - 1:y + 2, x - 2:x + 1]
        return bool(((patch[..., 0] - patch[..., 1]) > 60).any())

    first, second = BOXES[0][0], BOXES[1][0]
    for i in (0, 15, 29):                         # keyframe 0's box, held until second 1
        assert red_on_right_edge(out[i], first) and not red_on_right_edge(out[i], second), i
        assert not red_on_right_edge(src[i], first)
    for i in (30, 59):                            # keyframe 1's first box from second 1 to the end
        assert red_on_right_edge(out[i], second) and not red_on_right_edge(out[i], first), i
    inside = out[40, 45:50, 80:84]                # inside the second box, away from edges and text: untouched
    assert np.abs(inside - src[40, 45:50, 80:84]).max() < 12


def test_bad_inputs_name_the_field_file_or_row(setup, tmp_path):
    config, tmp = setup
    workdir = str(tmp / "run")

    def fails(match, **demo_fields):
        c = configs.small_detector()
        c.data.update(dict(config.data))
        c.demo.update({**dict(config.demo), "output_dir": str(tmp_path / "out"), **demo_fields})
        with pytest.raises(ValueError, match=match):
            demo.run_demo(c, workdir)

    fails("config.demo.video: no such file: '/nonexistent.mp4'", video="/nonexistent.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    fails(f"config.demo.video: cannot read video {tmp_path / 'bad.mp4'}", video=str(tmp_path / "bad.mp4"))
    _write_video(tmp_path / "short.mp4", 10)
    fails(r"short.mp4: 0.33 s \(10 frames at 30 fps\) is shorter than one clip window: at least 16 frames",
          video=str(tmp_path / "short.mp4"))
    _boxes_csv(tmp_path / "other.csv", "another_video")
    fails("other.csv: no rows for video 'clip'", boxes_csv=str(tmp_path / "other.csv"))
    (tmp_path / "rows.csv").write_text("clip,0,0.1,0.1,0.5,0.5,,0.9\nclip,1,0.1,0.1,0.5,x,,0.9\n")
    fails(r"rows.csv: 1 bad row\(s\):\n  .*rows.csv:2: box coordinates must be numbers",
          boxes_csv=str(tmp_path / "rows.csv"))
    (tmp_path / "late.csv").write_text("clip,0,0.1,0.1,0.5,0.5,,0.9\nclip,7,0.1,0.1,0.5,0.5,,0.9\n")
    fails("late.csv:2: timestamp 7 of video 'clip' is after the video's last keyframe at second 1",
          boxes_csv=str(tmp_path / "late.csv"))
    c = configs.small_detector()
    c.model.head.type = "acfb"
    with pytest.raises(demo.DemoError, match="config.model.head.type 'acfb': the demo runs the heads linear, acar"):
        demo.run_demo(c, workdir)


def test_cli_bad_video_exits_1_without_traceback(setup, tmp_path):
    config, tmp = setup
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), "--mode=demo", f"--workdir={tmp / 'run'}",
                           f"--config.data.root={config.data.root}", "--config.data.label_map=labels.pbtxt",
                           f"--config.demo.video={tmp_path / 'missing.mp4'}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert f"demo: config.demo.video: no such file: '{tmp_path / 'missing.mp4'}'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_keyframes_every_stride_inside_the_video():
    assert demo.keyframe_timestamps(60, 30, 1) == [0, 1]
    assert demo.keyframe_timestamps(61, 30, 1) == [0, 1, 2]
    assert demo.keyframe_timestamps(300, 30, 4) == [0, 4, 8]
    with pytest.raises(demo.DemoError, match="config.demo.stride_s"):
        demo.keyframe_timestamps(300, 30, 0)


def test_without_boxes_the_hog_detector_runs_on_each_keyframe(setup, tmp_path):
    """No boxes CSV: OpenCV's HOG people detector looks at both keyframes; it finds no person on flat grey with
    a square, and the demo says so instead of writing empty outputs."""
    config, tmp = setup
    c = configs.small_detector()
    c.data.update(dict(config.data))
    c.demo.update({**dict(config.demo), "boxes_csv": "", "output_dir": str(tmp_path / "out")})
    with pytest.raises(demo.DemoError, match=r"no person boxes at the 2 keyframes of .*clip.mp4 \(score >= 0.5\)"):
        demo.run_demo(c, str(tmp / "run"))
    assert not (tmp_path / "out").exists()
