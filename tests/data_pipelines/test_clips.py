"""The tf.data pipeline: box geometry through resize / pad / flip, determinism and resume, sharding, eval
batches, buckets and clear errors. Frames are small JPEGs written to tmp_path with a filled white box."""

import os

import numpy as np
import pytest
from PIL import Image

from configs.default import get_config
from data_pipelines import clips
from data_pipelines.records import FrameSource, KeyframeRecord

NUM_FRAMES = 4
K = 3


def _data_config(**overrides):
    data = get_config().data
    data.num_frames = NUM_FRAMES
    data.frame_stride = 2
    data.short_side = 96
    data.box_buckets = (4, 8)
    data.spatial_buckets = ((100, 170),)     # both test videos resize into it: 96x160 and 96x128, padded
    data.num_parallel_calls = 2
    for key, value in overrides.items():
        data[key] = value
    return data


def _write_video(root, name, height, width, rect, n_frames=12):
    """Black frames with a white filled rectangle rect = (row0, col0, row1, col1), half-open pixels."""
    folder = os.path.join(root, name)
    os.makedirs(folder)
    frame = np.zeros([height, width, 3], np.uint8)
    r0, c0, r1, c1 = rect
    frame[r0:r1, c0:c1] = 255
    for f in range(1, n_frames + 1):
        Image.fromarray(frame).save(os.path.join(folder, f"image_{f:06d}.jpg"), quality=100, subsampling=0)
    return folder


VIDEOS = {"wide": (150, 250, (30, 50, 90, 120)), "narrow": (150, 200, (60, 20, 140, 70))}


def _records(root, keyframes=(4, 6, 8), extra_boxes=0):
    records = []
    for name, (h, w, (r0, c0, r1, c1)) in VIDEOS.items():
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            _write_video(root, name, h, w, (r0, c0, r1, c1))
        box = [c0 / w, r0 / h, c1 / w, r1 / h]
        for k in keyframes:
            n = 1 + extra_boxes
            boxes = np.array([box] + [[0.0, 0.0, 0.1, 0.1]] * extra_boxes, np.float32)
            labels = np.zeros([n, K], np.float32)
            labels[0, k % K] = 1
            records.append(KeyframeRecord(name, 900 + k, boxes, labels, np.ones([n], np.float32),
                                          np.arange(n, dtype=np.int32),
                                          FrameSource(frames_dir=folder, keyframe_index=k, num_frames=12)))
    return records


def _assert_box_on_pixels(clip, box, valid_hw, data, where):
    """clip [T, H, W, 3] normalised; the white region must coincide with box * valid size within 1 px."""
    h, w = (int(v) for v in valid_hw)
    assert (clip[:, h:] == 0).all() and (clip[:, :, w:] == 0).all(), f"{where}: padding must be 0"
    img = (clip[NUM_FRAMES // 2, :h, :w] * np.asarray(data.std) + np.asarray(data.mean)) * data.pixel_scale
    bright = img.mean(-1) > 127.5
    rows, cols = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
    got = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)
    want = np.asarray(box, np.float64) * [w, h, w, h]
    assert np.abs(got - want).max() <= 1.0, f"{where}: white pixels span {got}, box * valid size {want}"


def test_train_box_geometry_through_resize_pad_and_flip(tmp_path):
    data = _data_config(box_jitter=0.0, hflip=True)
    records = _records(str(tmp_path))
    train = clips.TrainInput(records, data, global_batch_size=2, seed=3, num_classes=K)
    flips = set()
    for step, batch in zip(range(2 * train.steps_per_epoch), train.iterator(), strict=False):
        assert batch["clips"].shape == (2, NUM_FRAMES, 100, 170, 3)
        for i in range(2):
            hw = tuple(batch["valid_hw"][i])
            assert hw in {(96, 160), (96, 128)}
            assert batch["box_mask"][i].tolist() == [True, False, False, False]
            box = batch["boxes"][i, 0]
            _assert_box_on_pixels(batch["clips"][i], box, hw, data, f"step {step} clip {i}")
            name = "wide" if hw == (96, 160) else "narrow"
            h, w, (r0, c0, r1, c1) = VIDEOS[name]
            flipped = abs(box[0] - c0 / w) > 1e-6
            if flipped:
                np.testing.assert_allclose(box, [1 - c1 / w, r0 / h, 1 - c0 / w, r1 / h], atol=1e-6)
            flips.add(flipped)
            # the metadata a bank window is looked up from: the clip's keyframe and whether it was flipped
            assert batch["video_id"][i] == name and batch["flip"][i] == flipped and batch["clip_mask"][i]
            key = (name, int(batch["timestamp"][i]))
            assert key in {(r.video_id, r.timestamp) for r in records}
    assert flips == {False, True}, "the random flip should have drawn both outcomes"


@pytest.mark.parametrize("scale, flip", [(120, True), (96, False), (144, True)])
def test_eval_box_geometry_per_view(tmp_path, scale, flip):
    data = _data_config()
    records = _records(str(tmp_path), keyframes=(4, 6))
    n_views = 0
    for batch in clips.eval_batches(records, data, batch_size=3, scale=scale, flip=flip):
        for i in np.flatnonzero(batch["clip_mask"]):
            box = batch["boxes"][i, 0]
            orig = batch["orig_boxes"][i, 0]
            want = [1 - orig[2], orig[1], 1 - orig[0], orig[3]] if flip else orig
            np.testing.assert_allclose(box, want, atol=1e-6)
            assert batch["flip"][i] == flip
            _assert_box_on_pixels(batch["clips"][i], box, batch["valid_hw"][i], data, f"view {scale} {flip}")
            n_views += 1
    assert n_views == len(records)


def test_resume_at_step_k_and_same_seed_give_identical_batches(tmp_path):
    data = _data_config()            # jitter 0.075 and flip on: the stateless draws must repeat too
    records = _records(str(tmp_path))
    make = lambda seed: clips.TrainInput(records, data, global_batch_size=2, seed=seed, num_classes=K)
    assert make(0).steps_per_epoch == 3
    run_a = [b for _, b in zip(range(6), make(0).iterator(), strict=False)]
    run_b = [b for _, b in zip(range(6), make(0).iterator(), strict=False)]
    resumed = [b for _, b in zip(range(3), make(0).iterator(start_step=3), strict=False)]
    other_seed = [b for _, b in zip(range(6), make(1).iterator(), strict=False)]
    for a, b in zip(run_a, run_b, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for step, (a, r) in enumerate(zip(run_a[3:], resumed, strict=True), start=3):
        for key in a:
            np.testing.assert_array_equal(a[key], r[key], err_msg=f"step {step} {key}")
    assert any(not np.array_equal(a["boxes"], o["boxes"]) for a, o in zip(run_a, other_seed, strict=True))
    jittered = np.concatenate([b["boxes"][:, 0] for b in run_a])
    assert len(np.unique(jittered.round(6), axis=0)) == len(jittered), "jitter redraws every epoch"


def test_hosts_yield_their_slices_of_each_global_batch(tmp_path):
    data = _data_config()
    records = _records(str(tmp_path), keyframes=(4, 5, 6, 7))
    make = lambda p, n: clips.TrainInput(records, data, global_batch_size=4, seed=5, process_index=p,
                                         process_count=n, num_classes=K).iterator()
    whole = next(make(0, 1))
    halves = [next(make(p, 2)) for p in range(2)]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([h[key] for h in halves]), err_msg=key)
    with pytest.raises(ValueError, match="not divisible by process_count=3"):
        clips.TrainInput(records, data, global_batch_size=4, seed=5, process_count=3, num_classes=K)


def test_eval_batches_fixed_size_with_filler_clips(tmp_path):
    data = _data_config(eval_pad_spatial=True)   # both videos share the padded bucket (100, 170)
    records = _records(str(tmp_path), keyframes=(4, 6, 8))
    batches = clips.eval_batches(records, data, batch_size=4, scale=96, flip=False)
    assert len(batches) == 2                  # 6 keyframes in one bucket: 4 + (2 real, 2 filler)
    got = list(batches)
    assert [b["clip_mask"].tolist() for b in got] == [[True] * 4, [True, True, False, False]]
    last = got[-1]
    assert last["video_id"].tolist()[2:] == ["", ""] and not last["box_mask"][2:].any()
    assert (last["clips"][2:] == 0).all()
    seen = [(v, t) for b in got for v, t, m in zip(b["video_id"], b["timestamp"], b["clip_mask"], strict=True)
            if m]
    assert seen == [(r.video_id, r.timestamp) for r in records]
    np.testing.assert_array_equal(got[0]["orig_boxes"][:, :1], np.stack([r.boxes for r in records[:4]]))
    np.testing.assert_array_equal(got[0]["labels"][:, 0], np.stack([r.labels[0] for r in records[:4]]))
    host1 = list(clips.eval_batches(records, data, batch_size=4, scale=96, flip=False, process_index=1,
                                    process_count=2))
    assert [b["clip_mask"].tolist() for b in host1] == [[True, True], [False, False]]


def test_spatial_buckets_exact_sizes_aspect_groups_and_rescaling():
    data = _data_config(spatial_buckets=(), max_spatial_buckets=3)
    sizes = [(340, 453), (340, 453), (360, 480), (480, 360)]
    assert clips.spatial_buckets(sizes, data, 256) == ((256, 341), (341, 256))
    many = [(100, w) for w in range(120, 200, 5)] + [(150, 100)]
    buckets = clips.spatial_buckets(many, data, 100)
    assert len(buckets) == 3 and (150, 100) in buckets and (100, 195) in buckets
    for h, w in many:
        clips.assign_spatial_bucket((h, w), buckets)
    data = _data_config(spatial_buckets=((256, 341),), short_side=256)
    for scale in (256, 288, 320):
        (bucket,) = clips.spatial_buckets([], data, scale)
        assert bucket[0] == scale and clips.assign_spatial_bucket((scale, int(scale * 453 / 340)), [bucket])


def test_box_buckets_are_sized_from_the_data():
    assert clips.data_box_buckets([1, 3, 8], (4, 8)) == (4, 8)
    assert clips.data_box_buckets([1, 9], (8, 4)) == (4, 8, 16)        # the largest keyframe, rounded up to 8
    assert clips.data_box_buckets([100, 2], (8, 16, 32, 64)) == (8, 16, 32, 64, 104)
    assert clips.data_box_buckets([], (8,)) == (8,)
    with pytest.raises(ValueError, match="config.data.box_buckets must be positive"):
        clips.data_box_buckets([1], (0, 8))


def test_keyframe_of_100_boxes_is_never_split_truncated_or_refused(tmp_path):
    """A crowded keyframe beyond the largest configured bucket (8) gets a bucket sized from the data (104):
    all its boxes reach the batch, in train and eval, and the bucket histogram is logged."""
    crowd = _records(str(tmp_path), keyframes=(4,), extra_boxes=99)[0]
    assert crowd.num_boxes == 100
    records = [crowd] + _records(str(tmp_path), keyframes=(5, 6))
    data = _data_config()
    train = clips.TrainInput(records, data, global_batch_size=1, seed=0, num_classes=K)
    assert {it.n_max for it in train.items} == {4, 104}
    message = clips.log_box_bucket_histogram(train.items, "train")
    assert message == "train: keyframes per N_max box bucket {4: 4, 104: 1} (most crowded keyframe: 100 boxes)"
    crowd_step = next(s for s in range(train.steps_per_epoch) if train.step_records(s)[1].tolist() == [0])
    batch = next(train.iterator(start_step=crowd_step))
    assert batch["boxes"].shape == (1, 104, 4) and int(batch["box_mask"].sum()) == 100
    evals = list(clips.eval_batches(records, data, batch_size=2, scale=96, flip=False))
    crowded = [b for b in evals if b["boxes"].shape[1] == 104]
    assert len(crowded) == 1 and crowded[0]["clip_mask"].tolist() == [True, False]
    np.testing.assert_array_equal(crowded[0]["orig_boxes"][0, :100], crowd.boxes)


def test_eval_uses_each_exact_size_unpadded_unless_asked(tmp_path):
    """Eval never pads by default: more distinct sizes than max_spatial_buckets, hand-set training buckets,
    still one compiled shape per exact resized size per scale; eval_pad_spatial=True pads into the buckets."""
    records = _records(str(tmp_path), keyframes=(4, 6, 8))
    data = _data_config(max_spatial_buckets=1)   # training would pad both sizes into the hand-set (100, 170)
    for scale in (96, 120):
        want = {(scale, int(scale * 250 / 150)), (scale, int(scale * 200 / 150))}
        assert set(clips.spatial_buckets(records, data, scale, exact=True)) == want
        batches = clips.eval_batches(records, data, batch_size=2, scale=scale, flip=False)
        assert {hw for hw, _ in batches.buckets} == want
        got = list(batches)
        assert {b["clips"].shape[2:4] for b in got} == want
        for b in got:
            real = b["clip_mask"]
            assert (b["valid_hw"][real] == np.asarray(b["clips"].shape[2:4])).all(), "no clip is padded"
    padded = list(clips.eval_batches(records, _data_config(eval_pad_spatial=True), batch_size=2, scale=96,
                                     flip=False))
    assert {b["clips"].shape[2:4] for b in padded} == {(100, 170)}
    train = clips.TrainInput(records, data, global_batch_size=2, seed=0, num_classes=K)
    assert {hw for hw, _ in train.buckets} == {(100, 170)}, "training keeps its (padded) buckets"


def test_keyframe_fitting_no_spatial_bucket_is_an_error_naming_it(tmp_path):
    records = _records(str(tmp_path), keyframes=(5,))
    with pytest.raises(ValueError, match=r"keyframe wide,905 \(frames 150x250.*fits no spatial bucket"):
        clips.eval_batches(records, _data_config(spatial_buckets=((96, 150),), eval_pad_spatial=True),
                           batch_size=1, scale=96, flip=False)
    with pytest.raises(ValueError, match="keyframe wide,905 appears in records 0 and 2"):
        clips.TrainInput(records + records[:1], _data_config(), global_batch_size=1, seed=0, num_classes=K)


def test_missing_and_unreadable_frames_name_the_file(tmp_path):
    records = _records(str(tmp_path), keyframes=(4,))
    missing = os.path.join(str(tmp_path), "narrow", "image_000003.jpg")    # keyframe 4's window: 1, 3, 5, 7
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=missing):
        list(clips.eval_batches(records, _data_config(), batch_size=2, scale=96, flip=False))
    _write_video(str(tmp_path), "narrow2", 150, 200, (0, 0, 10, 10))
    broken = os.path.join(str(tmp_path), "narrow2", "image_000005.jpg")
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 this is not a JPEG")
    records = [KeyframeRecord("narrow2", 904, records[0].boxes, records[0].labels, records[0].scores,
                              records[0].person_ids, FrameSource(os.path.dirname(broken), keyframe_index=4,
                                                                 num_frames=12))]
    train = clips.TrainInput(records, _data_config(), global_batch_size=1, seed=0, num_classes=K)
    with pytest.raises(Exception, match=broken) as info:
        next(train.iterator())
    assert "narrow2,904" in str(info.value)
