"""The long-term synthetic set: AVA formats read back by ava_files, the evidence of every long-term label lies
outside the clip window of its keyframe (as clips.py cuts it) and inside the bank window, the clip shows only
its own second, the marker is beyond every actor's RoI reach, and writes are deterministic and atomic."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs.default_longterm import get_config
from data_pipelines import ava_files, frame_index, synthetic
from data_pipelines import synthetic_longterm as lt
from tests.helpers import paths

REPO = str(paths.REPO)


def _synth(**overrides):
    synth = get_config().synthetic
    for key, value in overrides.items():
        synth[key] = value
    return synth


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("longterm") / "data")
    lt.ensure_dataset(root, _synth(seed=5, num_train_videos=2, num_val_videos=2, keyframes_per_video=8))
    return root


def _data_config(root):
    data = get_config().data
    data.root = root
    return data


def _clip_window(keyframe: int, seconds: int) -> tuple[int, int]:
    """First and last frame of the clip window of a keyframe under configs/default_longterm.py, from the frame
    indices clips.py feeds the model (frame_index.clip_frame_indices, AVA's looping policy, over the video's
    FPS * (seconds + 1) frames)."""
    data = get_config().data
    span = int(data.num_frames) * int(data.frame_stride)
    idx = frame_index.clip_frame_indices(keyframe, int(data.num_frames), int(data.frame_stride),
                                         synthetic.FPS * (seconds + 1))
    first = int(idx[0])
    assert np.array_equal(idx, np.arange(first, first + span, int(data.frame_stride))), "no looping at the ends"
    return first, first + span - 1          # the sampled frames and the stride gaps between them


def test_official_formats_read_back(dataset):
    data = _data_config(dataset)
    label_map = ava_files.read_label_map(os.path.join(dataset, data.label_map))
    assert label_map.ids == tuple(c.id for c in lt.CLASSES)
    assert label_map.num_classes == get_config().model.num_classes == lt.NUM_CLASSES
    assert get_config().train.num_pose_classes == lt.NUM_POSE_CLASSES == 3
    train = ava_files.load_keyframe_records(data, "train")
    assert len(train) == 2 * 8, "every keyframe of every video has its GT boxes (the bank needs each second)"
    for rec in train:
        assert rec.num_boxes == lt.ACTORS_PER_VIDEO
        np.testing.assert_array_equal(rec.labels[:, :3].sum(1), 1, err_msg="exactly one pose per actor")
        assert rec.labels[0, :3].argmax() != rec.labels[1, :3].argmax(), "the actors of a video differ in pose"
        assert rec.source.keyframe_index == synthetic.keyframe_frame(rec.timestamp)
    by_video = {}
    for rec in train:
        by_video.setdefault(rec.video_id, []).append(rec)
    for recs in by_video.values():      # static scenes: the same boxes at every keyframe of a video
        for rec in recs:
            np.testing.assert_allclose(rec.boxes, recs[0].boxes)
    val = ava_files.load_keyframe_records(data, "val")
    assert val and all(rec.labels.sum() == 0 for rec in val), "val boxes are detections, without actions"
    assert lt.class_groups() == {"pose": (1, 2, 3), "short_actor": (4,), "short_context": (5,),
                                 "long_actor": (6,), "long_context": (7,)}


def test_long_term_evidence_lies_outside_every_clip_window_and_inside_the_bank_window():
    """For every positive long-term label, each second that justifies it lies outside the clip window of the
    keyframe (frames as clips.py samples them; the nearest evidence frame is 8 frames past the window's edge)
    and within the bank window (|s - t| <= radius); the clip shows only its own second, whose draws the
    long-term labels never read."""
    synth = get_config().synthetic
    radius = int(synth.longterm_radius)
    assert lt.clip_within_its_second(int(get_config().data.num_frames), int(get_config().data.frame_stride))
    rng = np.random.default_rng(0)
    positives = 0
    for _ in range(12):
        video = lt.sample_video(rng, synth)
        seconds = len(video.marker_shown)
        labels = lt.video_labels(video, radius)
        for t in range(seconds):
            first, last = _clip_window(synthetic.keyframe_frame(synthetic.START_SECOND + 1 + t), seconds)
            assert {lt.second_of_frame(f, seconds) for f in range(first, last + 1)} == {t}
            span = lt.second_frames(t)
            assert span[0] <= first and last <= span[1]
            for i in range(len(video.actors)):
                evidence = {lt.RED_ELSEWHERE: [s for s in range(seconds) if s != t and video.red[s, i]],
                            lt.MARKER_ELSEWHERE: [s for s in range(seconds) if s != t and video.marker_shown[s]]}
                for column, event_seconds in evidence.items():
                    in_window = [s for s in event_seconds if abs(s - t) <= radius]
                    assert labels[t, i, column] == bool(in_window)
                    for s in in_window:
                        positives += 1
                        s_first, s_last = lt.second_frames(s)
                        assert s_last < first or s_first > last, "evidence inside the clip window"
                        assert min(abs(s_first - last), abs(first - s_last)) >= 8     # 7 frames between
        # The long-term labels of second t never read second t: flipping its draws leaves them as they are.
        for t in range(seconds):
            flipped = lt.Video(video.actors, video.marker, video.background, video.red.copy(),
                               video.marker_shown.copy())
            flipped.red[t] ^= True
            flipped.marker_shown[t] ^= True
            again = lt.video_labels(flipped, radius)
            np.testing.assert_array_equal(again[t][:, [lt.RED_ELSEWHERE, lt.MARKER_ELSEWHERE]],
                                          labels[t][:, [lt.RED_ELSEWHERE, lt.MARKER_ELSEWHERE]])
    assert positives > 50


def test_the_clip_pixels_show_exactly_the_current_second(dataset):
    """Read back from the JPEGs through the records: in every frame of a keyframe's clip window, an actor's box
    is red iff its "red now" label, and white marker pixels exist iff "marker now"."""
    data = _data_config(dataset)
    data.val_proposals = ""
    red = synthetic.COLOURS[synthetic.RED].astype(np.float32)
    for rec in ava_files.load_keyframe_records(data, "train") + ava_files.load_keyframe_records(data, "val"):
        first, last = _clip_window(rec.source.keyframe_index, rec.source.num_frames // synthetic.FPS - 1)
        for path in frame_index.frame_paths(rec.source.frames_dir, [first, rec.source.keyframe_index, last]):
            frame = frame_index.read_frame(path).astype(np.float32)
            height, width = frame.shape[:2]
            for box, labels in zip(rec.boxes, rec.labels, strict=True):
                c0, r0, c1, r1 = np.round(box * [width, height, width, height]).astype(int)
                inner = frame[r0 + 2:r1 - 2, c0 + 2:c1 - 2].reshape(-1, 3).mean(0)
                assert (np.abs(inner - red).max() < 40) == bool(labels[lt.RED_NOW]), (path, box, inner)
            white = frame.min(-1) > 200
            assert white.sum() > 20 if rec.labels[0, lt.MARKER_NOW] else white.sum() == 0, path


def test_the_marker_spot_is_beyond_every_actors_reach():
    synth = get_config().synthetic
    assert int(synth.relation_gap) > synthetic.LINEAR_HEAD_REACH
    rng = np.random.default_rng(1)
    for _ in range(60):
        video = lt.sample_video(rng, synth)
        marker = (*video.marker, video.marker[0] + lt.MARKER_SIZE, video.marker[1] + lt.MARKER_SIZE)
        for a in video.actors:
            assert synthetic.rect_gap(marker, a.rect) >= synth.relation_gap
            r0, c0, r1, c1 = a.rect
            assert 0 < r0 and 0 < c0 and r1 < synth.height and c1 < synth.width
        assert synthetic.rect_gap(video.actors[0].rect, video.actors[1].rect) >= lt.ACTOR_GAP
        assert len({a.pose for a in video.actors}) == lt.ACTORS_PER_VIDEO


def test_event_rates_and_long_term_positive_rate():
    """The per-second draws happen at p_event, and the long-term classes are neither rare nor common (their
    prevalence is the chance AP a clip-only model gets)."""
    synth = get_config().synthetic
    rng = np.random.default_rng(2)
    videos = [lt.sample_video(rng, synth) for _ in range(150)]
    red = np.concatenate([v.red.ravel() for v in videos])
    assert abs(red.mean() - synth.p_event) < 0.01
    labels = np.concatenate([lt.video_labels(v, int(synth.longterm_radius)).reshape(-1, lt.NUM_CLASSES)
                             for v in videos])
    prevalence = labels.mean(0)
    assert 0.25 < prevalence[lt.RED_ELSEWHERE] < 0.45 and 0.25 < prevalence[lt.MARKER_ELSEWHERE] < 0.45, prevalence


def test_deterministic_atomic_and_refuses_another_generators_root(tmp_path, monkeypatch):
    small = _synth(seed=3, num_train_videos=1, num_val_videos=1, keyframes_per_video=3)
    lt.ensure_dataset(str(tmp_path / "a"), small)
    lt.ensure_dataset(str(tmp_path / "b"), small)
    digest = lambda root: {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), "rb").read()
                           for d, _, files in os.walk(root) for n in files}
    assert digest(str(tmp_path / "a")) == digest(str(tmp_path / "b"))
    assert (tmp_path / "a" / "frames" / "long_train_000" / "image_000120.jpg").is_file()
    with pytest.raises(ValueError, match="'p_event': 0.5.*remove"):
        lt.ensure_dataset(str(tmp_path / "a"), _synth(seed=3, num_train_videos=1, num_val_videos=1,
                                                      keyframes_per_video=3, p_event=0.5))
    default_synth = get_config().synthetic
    default_synth.update(num_train_videos=1, num_val_videos=1, keyframes_per_video=1, width=384)
    synthetic.ensure_synthetic_dataset(str(tmp_path / "default"), default_synth)
    with pytest.raises(ValueError, match="'generator': 'synthetic_longterm'"):
        lt.ensure_dataset(str(tmp_path / "default"), small)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lt, "write_video", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        lt.ensure_dataset(str(tmp_path / "c"), small)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "default"], "a failed write leaves nothing behind"


@pytest.mark.parametrize("overrides, message", [
    (dict(p_event=0.0), r"config.synthetic.p_event: expected a probability"),
    (dict(relation_gap=60), r"config.synthetic.relation_gap: 60 px lets an actor's RoI feature read"),
    (dict(longterm_radius=0), r"config.synthetic.longterm_radius: expected >= 1"),
    (dict(width=100), r"synthetic.height/width = 64x100: 2 actors and a marker 80 px"),
])
def test_bad_settings_are_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        lt.ensure_dataset(str(tmp_path / "x"), _synth(num_train_videos=1, num_val_videos=1, **overrides))
    assert not (tmp_path / "x").exists()


def test_cli_writes_the_long_term_dataset(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "tools/make_synthetic_data.py", "--config=configs/default_longterm.py",
                    f"--out={out}", "--config.synthetic.num_train_videos=1", "--config.synthetic.num_val_videos=1",
                    "--config.synthetic.keyframes_per_video=2"], cwd=REPO, check=True)
    assert (out / "frames" / "long_val_000" / "image_000090.jpg").is_file()
    assert (out / lt.LABEL_MAP_FILE).read_text().endswith('name: "marker in another second of the window"\n'
                                                          '  id: 7\n}\n')
