"""Frame sources: the clip window rule (oracle: the reference's TemporalCenterCrop), frame paths, decoding."""

from __future__ import annotations

import re

import numpy as np
import pytest

from data_pipelines.frame_index import (
    FrameReadError,
    ava_keyframe_number,
    clip_frame_indices,
    count_frames,
    decode_video,
    frame_paths,
    probe_video,
    read_frame,
)
from tests.helpers import ava_fixtures as fx


def reference_center_crop(frame_indices: list[int], size: int, step: int) -> list[int]:
    """Oracle: ACAR-Net datasets/temporal_transforms.py TemporalCenterCrop(size, step), same semantics."""
    center = len(frame_indices) // 2
    begin = max(0, center - size // 2)
    out = list(frame_indices[begin:min(begin + size, len(frame_indices))])
    i = 0
    while len(out) < size:       # the reference appends while iterating over `out`: a cyclic repeat
        out.append(out[i])
        i += 1
    return out[::step]


def reference_window(k: int, span: int, num_available: int) -> list[int]:
    """The reference's per-keyframe frame list (its pickles): the span around k cut to the frames on disk."""
    return list(range(max(1, k - span // 2), min(k - span // 2 + span, num_available + 1)))


def test_centre_window_32_frames_stride_2():
    k = ava_keyframe_number(902, 900, 30)
    assert k == 61
    idx = clip_frame_indices(k, 32, 2, 27001, policy="loop")
    np.testing.assert_array_equal(idx, np.arange(k - 32, k + 31, 2))
    assert idx[16] == k and idx.dtype == np.int64


@pytest.mark.parametrize("num_available", [1, 5, 40, 64, 65, 200])
def test_loop_policy_equals_reference_center_crop_at_every_keyframe(num_available):
    for num_frames, stride in [(32, 2), (8, 2), (4, 1), (5, 3)]:
        span = num_frames * stride
        for k in range(1, num_available + 1):
            want = reference_center_crop(reference_window(k, span, num_available), span, stride)
            got = clip_frame_indices(k, num_frames, stride, num_available, policy="loop")
            assert got.tolist() == want, (num_frames, stride, k)


def test_last_policy_takes_the_last_span_frames_near_the_end():
    # Kinetics (0-based decoded frames): near the end the clip is the last 4T frames (paper).
    idx = clip_frame_indices(290, 32, 2, 300, policy="last", first_index=0)
    np.testing.assert_array_equal(idx, np.arange(236, 300, 2))
    np.testing.assert_array_equal(clip_frame_indices(150, 32, 2, 300, policy="last", first_index=0),
                                  np.arange(118, 182, 2))        # centred where it fits
    np.testing.assert_array_equal(clip_frame_indices(3, 32, 2, 300, policy="last", first_index=0),
                                  np.arange(0, 64, 2))           # slides at the start too
    short = clip_frame_indices(10, 8, 2, 12, policy="last", first_index=0)   # shorter than the window: loop
    np.testing.assert_array_equal(short, [0, 2, 4, 6, 8, 10, 0, 2])


def test_window_errors():
    with pytest.raises(ValueError, match="keyframe index 0 is outside the available frames 1..10"):
        clip_frame_indices(0, 8, 2, 10)
    with pytest.raises(ValueError, match="policy must be one of"):
        clip_frame_indices(5, 8, 2, 10, policy="wrap")


def test_frame_paths_naming_and_missing_file(tmp_path):
    fx.write_frames(tmp_path / "v", 3)
    assert frame_paths(str(tmp_path / "v"), [1, 3]) == [str(tmp_path / "v" / "image_000001.jpg"),
                                                        str(tmp_path / "v" / "image_000003.jpg")]
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "v" / "image_000004.jpg"))):
        frame_paths(str(tmp_path / "v"), [2, 4])


def test_count_frames_and_gaps(tmp_path):
    fx.write_frames(tmp_path / "v", 5)
    assert count_frames(str(tmp_path / "v")) == 5
    (tmp_path / "v" / "image_000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "v" / "image_000003.jpg"))):
        count_frames(str(tmp_path / "v"))
    missing = re.escape(str(tmp_path / "w"))
    with pytest.raises(FileNotFoundError, match=f"frame folder {missing} does not exist"):
        count_frames(str(tmp_path / "w"))


def test_read_frame(tmp_path):
    fx.write_jpeg(tmp_path / "a.jpg", value=200, size=(6, 10))
    img = read_frame(str(tmp_path / "a.jpg"))
    assert img.shape == (6, 10, 3) and img.dtype == np.uint8 and abs(int(img.mean()) - 200) <= 2
    (tmp_path / "b.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:40])    # truncated JPEG
    with pytest.raises(FrameReadError, match=re.escape(str(tmp_path / "b.jpg"))):
        read_frame(str(tmp_path / "b.jpg"))


def test_decode_video_counter_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    fx.write_video(path, num_frames=12, fps=10)
    frames = decode_video(str(path))
    assert frames.shape == (12, 32, 48, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.reshape(12, -1).mean(axis=1), 20 * np.arange(12), atol=8)
    assert probe_video(str(path)) == (12, 10.0)


def test_decode_video_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    with pytest.raises(FrameReadError, match=re.escape(str(bad))):
        decode_video(str(bad))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.mp4"))):
        decode_video(str(tmp_path / "none.mp4"))
