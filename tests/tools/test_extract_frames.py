"""tools/extract_frames.py on generated videos: frame count, seek, 30 fps resampling, size, naming, resume,
failure report, parallel workers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ava_fixtures as fx
from tests.helpers.videos import write_mp4

TOOL = fx.REPO / "tools" / "extract_frames.py"
_spec = importlib.util.spec_from_file_location("extract_frames", TOOL)
extract_frames = importlib.util.module_from_spec(_spec)
sys.modules["extract_frames"] = extract_frames
_spec.loader.exec_module(extract_frames)


def _levels(frames_dir) -> np.ndarray:
    names = sorted(n for n in os.listdir(frames_dir) if n.endswith(".jpg"))
    return np.asarray([np.asarray(Image.open(frames_dir / n)).mean() for n in names])


def _videos(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    fx.write_video(videos / "vid30.mp4", num_frames=12, fps=30, size=(48, 64))   # grey level 20 * i
    fx.write_video(videos / "vid15.mkv", num_frames=6, fps=15, size=(48, 64))
    return videos


def test_extract_count_size_naming_and_resampling(tmp_path):
    videos, out = _videos(tmp_path), tmp_path / "frames"
    rc = extract_frames.main(["--video_dir", str(videos), "--frame_dir", str(out), "--start_second", "0",
                              "--num_frames", "10", "--height", "24", "--workers", "1"])
    assert rc == 0 and sorted(os.listdir(out)) == ["vid15", "vid30"]
    names = sorted(os.listdir(out / "vid30"))[1:]
    assert names == [f"image_{i:06d}.jpg" for i in range(1, 11)]          # capped at --num_frames
    assert Image.open(out / "vid30" / names[0]).size == (32, 24)          # height 24, width 64 * 24 / 48
    np.testing.assert_allclose(_levels(out / "vid30"), 20 * np.arange(10), atol=8)
    # 15 fps -> 30 fps: every source frame twice; the clip ends after its 6 frames (12 slots, capped at 10)
    np.testing.assert_allclose(_levels(out / "vid15"), 20 * (np.arange(10) // 2), atol=8)


def test_extract_seeks_to_start_second(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    fx.write_video(videos / "long.mp4", num_frames=12, fps=10, size=(48, 64))   # 1.2 s at 10 fps
    out = tmp_path / "frames"
    assert extract_frames.main(["--video_dir", str(videos), "--frame_dir", str(out), "--start_second", "0.5",
                                "--num_frames", "0", "--height", "48", "--workers", "1"]) == 0
    # second 0.5 is source frame 5; 0.7 s left at 30 fps = 21 slots, each source frame 3 times
    np.testing.assert_allclose(_levels(out / "long"), 20 * (5 + np.arange(21) // 3), atol=8)


def test_resume_skips_finished_and_redoes_partial(tmp_path):
    videos, out = _videos(tmp_path), tmp_path / "frames"
    (out / "vid30").mkdir(parents=True)
    (out / "vid30" / "sentinel").write_text("finished earlier")              # finished: left alone
    (out / ".vid15.partial").mkdir()
    (out / ".vid15.partial" / "image_000001.jpg").write_bytes(b"half")       # half-written: redone
    options = extract_frames.Options(start_second=0, num_frames=4, height=24)
    assert extract_frames.run(str(videos), str(out), options, workers=1) == {}
    assert os.listdir(out / "vid30") == ["sentinel"]
    assert sorted(os.listdir(out / "vid15")) == ["extraction.json"] + [f"image_{i:06d}.jpg" for i in range(1, 5)]
    assert not (out / ".vid15.partial").exists()


def test_corrupt_video_reported_and_others_extracted(tmp_path):
    videos, out = _videos(tmp_path), tmp_path / "frames"
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    proc = subprocess.run([sys.executable, str(TOOL), "--video_dir", str(videos), "--frame_dir", str(out),
                           "--kinetics", "--height", "24", "--workers", "2"],
                          capture_output=True, text=True, timeout=120, cwd=fx.REPO)
    assert proc.returncode == 1, proc.stderr
    assert "1 video(s) failed to decode" in proc.stderr and "[ERROR] broken:" in proc.stderr
    assert (out / extract_frames.FAILURES_FILE).read_text().startswith("broken\t")
    assert sorted(os.listdir(out)) == ["extract_failures.txt", "vid15", "vid30"]   # no partial left behind
    assert len(os.listdir(out / "vid30")) == 13 and len(os.listdir(out / "vid15")) == 13   # --kinetics: whole


def test_scaled_width_matches_ffmpeg_rounding():
    assert extract_frames.scaled_width(1920, 1080, 340) == 604     # 604.44
    assert extract_frames.scaled_width(640, 480, 340) == 453       # 453.33
    assert extract_frames.scaled_width(720, 404, 340) == 606       # 605.94
    assert extract_frames.AVA_NUM_FRAMES == 27001


@pytest.mark.parametrize("name,expected", [("abc.mp4", "abc"), ("a.b.webm", "a.b")])
def test_video_id(name, expected):
    assert extract_frames.video_id_of(name) == expected


def _counter_video(path, num_frames: int, fps: int) -> None:
    """Frame i: red level 20 * i mod 240 (a counter), a green bar 3 * i px wide (detail for the scaler)."""
    def frame(i: int) -> np.ndarray:
        img = np.zeros([90, 160, 3], np.uint8)
        img[..., 0] = 20 * i % 240
        img[:, :3 * i, 1] = 255
        return img
    write_mp4(path, (frame(i) for i in range(num_frames)), fps)


def _jpegs(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))


def _frames(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / n), np.float32) for n in _jpegs(folder)])


def _reference_command(video, ref, start: str, num_frames: int, height: int = 68) -> None:
    """The reference's extraction command, with imageio-ffmpeg's binary."""
    import imageio_ffmpeg  # noqa: PLC0415
    ref.mkdir(parents=True)
    limit = ["-frames:v", str(num_frames)] if num_frames else []
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-ss", start, "-i", str(video), "-qscale:v", "1", *limit,
                    "-vf", f"scale=-1:{height},fps=30", str(ref / "image_%06d.jpg"), "-loglevel", "error"],
                   check=True, stdin=subprocess.DEVNULL, timeout=60)


def test_default_backend_is_byte_identical_to_the_reference_command(tmp_path):
    """The default path runs the reference's ffmpeg command: the same JPEG bytes, and the version recorded."""
    import imageio_ffmpeg  # noqa: PLC0415
    videos = tmp_path / "videos"
    videos.mkdir()
    _counter_video(videos / "v.mp4", 50, 25)
    _reference_command(videos / "v.mp4", tmp_path / "ref" / "v", "1", 30)
    out = tmp_path / "ours"
    assert extract_frames.main(["--video_dir", str(videos), "--frame_dir", str(out), "--start_second", "1",
                                "--num_frames", "30", "--height", "68", "--workers", "1"]) == 0
    names = _jpegs(out / "v")
    assert names == _jpegs(tmp_path / "ref" / "v") and len(names) == 30
    for n in names:
        assert (out / "v" / n).read_bytes() == (tmp_path / "ref" / "v" / n).read_bytes(), n
    info = json.loads((out / "v" / "extraction.json").read_text())
    assert info["backend"] == "ffmpeg" and info["ffmpeg_version"] == imageio_ffmpeg.get_ffmpeg_version()
    assert info["frames"] == 30 and "-qscale:v 1 -frames:v 30 -vf scale=-1:68,fps=30" in info["command"]


@pytest.mark.parametrize("fps,num_source,start,num_frames",
                         [(25, 75, "1", 40), (24, 24, "0", 0), (30, 36, "0.5", 0)])
def test_pyav_fallback_matches_the_reference_ffmpeg_command(tmp_path, fps, num_source, start, num_frames):
    """--backend=pyav against the reference's own ffmpeg command (imageio-ffmpeg's binary). Same frames chosen
    (seek, 30 fps resampling, end of stream), same size; pixels within JPEG/colour-conversion noise."""
    videos = tmp_path / "videos"
    videos.mkdir()
    _counter_video(videos / "v.mp4", num_source, fps)
    ref = tmp_path / "ref" / "v"
    _reference_command(videos / "v.mp4", ref, start, num_frames)
    out = tmp_path / "ours"
    assert extract_frames.main(["--video_dir", str(videos), "--frame_dir", str(out), "--start_second", start,
                                "--num_frames", str(num_frames), "--height", "68", "--workers", "1",
                                "--backend", "pyav"]) == 0
    assert _jpegs(out / "v") == _jpegs(ref)
    want, got = _frames(ref), _frames(out / "v")
    assert got.shape == want.shape and want.shape[1:3] == (68, 121)      # 160 * 68 / 90 = 120.9 -> 121
    source_of = lambda frames: np.rint(frames[..., 0].mean(axis=(1, 2)) / 20).astype(int) % 12
    np.testing.assert_array_equal(source_of(got), source_of(want))
    assert np.abs(got - want).mean() < 4.0
