"""Readers of the official AVA files on real-format fixtures.

First: ids, names, exclusions, thresholds, person ids. Then: one test per bad input; every error names the
file and the 1-based line, and a bad row costs nothing else (the error lists exactly that row).
"""

from __future__ import annotations

import re
import shutil
import warnings

import numpy as np
import pytest

from data_pipelines import ava_files
from data_pipelines.ava_files import (
    AvaFormatError,
    UnknownActionWarning,
    load_keyframe_records,
    read_box_annotations,
    read_exclusions,
    read_label_map,
)
from tests.helpers import ava_fixtures as fx


@pytest.fixture(scope="module")
def label_map():
    return read_label_map(str(fx.LABEL_MAP_60))


# ------------------------------------------------------------------------------------------------ item 1

def test_label_map_60_classes_ids_and_names(label_map):
    assert label_map.num_classes == 60
    assert label_map.ids[:3] == (1, 3, 4) and label_map.ids[-1] == 80
    assert label_map.names[0] == "bend/bow (at the waist)"
    assert label_map.names[-1] == "watch (a person)"
    omitted = {2, 16, 18, 19, 21, 23, 25, 31, 32, 33, 35, 39, 40, 42, 44, 50, 53, 55, 71, 75}
    assert set(range(1, 81)) - set(label_map.ids) == omitted
    assert label_map.index_of(1) == 0 and label_map.index_of(3) == 1 and label_map.index_of(80) == 59
    with pytest.raises(KeyError, match=f"action id 2 .*{re.escape(str(fx.LABEL_MAP_60))}"):
        label_map.index_of(2)


def test_label_map_80_class_full_format(tmp_path):
    path = fx.write(tmp_path / "ava_action_list_v2.2.pbtxt", """\
# AVA v2.2 full list
label {
  name: "bend/bow (at the waist)"
  label_id: 1
  label_type: PERSON_MOVEMENT
}
label {
  name: "crawl"
  label_id: 2
  label_type: PERSON_MOVEMENT
}
label {
  name: "answer phone"
  label_id: 80
  label_type: OBJECT_MANIPULATION
}
""")
    m = read_label_map(path)
    assert m.ids == (1, 2, 80) and m.names == ("bend/bow (at the waist)", "crawl", "answer phone")


def test_label_map_malformed_names_file_and_line(tmp_path):
    text = 'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: x\n}\n'
    path = fx.write(tmp_path / "bad.pbtxt", text)
    with pytest.raises(AvaFormatError, match=f"{re.escape(path)}:7: id must be an integer"):
        read_label_map(path)


def test_gt_rows_merge_into_boxes_with_person_ids(tmp_path, label_map):
    boxes = read_box_annotations(fx.write(tmp_path / "gt.csv", fx.GT_TRAIN), label_map)
    assert [(b.video_id, b.timestamp, b.person_id, b.line) for b in boxes] == [
        ("-5KQ66BBWC4", 902, 1, 1), ("-5KQ66BBWC4", 902, 0, 3), ("-5KQ66BBWC4", 903, 1, 5),
        ("1j20qq1JyX4", 904, 3, 6)]
    np.testing.assert_allclose(boxes[0].box, (0.077, 0.151, 0.283, 0.811), rtol=0, atol=1e-7)
    assert np.flatnonzero(boxes[0].labels).tolist() == [label_map.index_of(12), label_map.index_of(80)]
    assert np.flatnonzero(boxes[1].labels).tolist() == [label_map.index_of(17), label_map.index_of(74)]
    assert boxes[0].score == 1.0 and boxes[0].labels.shape == (60,)
    assert boxes[3].box[2] == 1.0  # 1.0004 lies within the rounding tolerance and is clamped


def test_detections_score_column_and_person_boxes(tmp_path, label_map):
    boxes = read_box_annotations(fx.write(tmp_path / "det.csv", fx.PROPOSALS_VAL), label_map, with_scores=True)
    assert [b.score for b in boxes] == pytest.approx([0.99, 0.85, 0.849, 0.97, 0.97])
    assert all(b.person_id == -1 and not b.labels.any() for b in boxes)   # "" and -1: person boxes
    train_det = fx.write(tmp_path / "train_det.csv", fx.PROPOSALS_TRAIN)
    labelled = read_box_annotations(train_det, label_map, with_scores=True)
    assert np.flatnonzero(labelled[0].labels).tolist() == [label_map.index_of(12), label_map.index_of(79)]


def test_exclusions(tmp_path):
    assert read_exclusions(fx.write(tmp_path / "ex.csv", fx.EXCLUSIONS)) == {("1j20qq1JyX4", 903),
                                                                             ("-5KQ66BBWC4", 1000)}
    bad = fx.write(tmp_path / "bad_ex.csv", "a,0902\nb,09x3\n")
    with pytest.raises(AvaFormatError, match=f"{re.escape(bad)}:2: timestamp must be an integer"):
        read_exclusions(bad)


def test_train_records_merge_gt_and_proposals_above_threshold(tmp_path, label_map):
    fx.write_ava_root(tmp_path)
    records = load_keyframe_records(fx.data_config(tmp_path), "train")
    assert [(r.video_id, r.timestamp) for r in records] == [("-5KQ66BBWC4", 902), ("-5KQ66BBWC4", 903),
                                                           ("1j20qq1JyX4", 904)]
    r902, r903, _ = records
    # 902: two GT boxes + one proposal (0.95) carrying its labels as given
    assert r902.num_boxes == 3 and r902.scores.tolist() == pytest.approx([1.0, 1.0, 0.95])
    assert r902.person_ids.tolist() == [1, 0, -1]
    assert np.flatnonzero(r902.labels[2]).tolist() == [label_map.index_of(12), label_map.index_of(79)]
    # 903: proposal at exactly 0.9 kept (score >= threshold, as PySlowFast), 0.899 dropped
    assert r903.num_boxes == 2 and r903.scores.tolist() == pytest.approx([1.0, 0.9])
    assert r902.labels.dtype == np.float32 and r902.boxes.dtype == np.float32
    assert r902.person_ids.dtype == np.int32
    # AVA keyframe frame number: (t - 900) * fps + 1
    assert r902.source.keyframe_index == (902 - 900) * fx.FPS + 1 and r903.source.keyframe_index == 7
    assert r902.source.num_frames == fx.NUM_FRAMES and r902.source.frames_dir.endswith("frames/-5KQ66BBWC4")
    gt_only = load_keyframe_records(fx.data_config(tmp_path, train_proposals=""), "train")
    assert [r.num_boxes for r in gt_only] == [2, 1, 1]


def test_val_records_proposals_threshold_and_exclusions(tmp_path):
    fx.write_ava_root(tmp_path)
    records = load_keyframe_records(fx.data_config(tmp_path), "val")
    # 903 is excluded; 902 keeps the 0.99 and 0.85 boxes (threshold 0.85), not the 0.849 one
    assert [(r.video_id, r.timestamp) for r in records] == [("1j20qq1JyX4", 902), ("1j20qq1JyX4", 904)]
    assert records[0].scores.tolist() == pytest.approx([0.99, 0.85])
    assert not records[0].labels.any()
    on_gt = load_keyframe_records(fx.data_config(tmp_path, val_proposals=""), "val")
    assert [(r.timestamp, r.num_boxes) for r in on_gt] == [(902, 1)]
    assert on_gt[0].labels.sum() == 1 and on_gt[0].person_ids.tolist() == [0]


# ------------------------------------------------------------------------------------------------ item 2

def _bad_row(tmp_path, row: str, *, with_scores: bool = False) -> tuple[str, str]:
    """A GT (or detections) file with one bad row at line 3 between good rows; returns (path, message)."""
    good = "1j20qq1JyX4,0902,0.1,0.1,0.5,0.9,12,{}\n".format("0.9" if with_scores else "0")
    path = fx.write(tmp_path / "bad.csv", good + good.replace("0902", "0903") + row + "\n" + good)
    with pytest.raises(AvaFormatError) as err:
        read_box_annotations(path, read_label_map(str(fx.LABEL_MAP_60)), with_scores=with_scores)
    message = str(err.value)
    assert f"{path}: 1 bad row(s)" in message and f"{path}:3:" in message     # exactly that row, by line
    assert f"{path}:1:" not in message and f"{path}:4:" not in message
    return path, message


def test_bad_row_with_7_columns(tmp_path):
    _, message = _bad_row(tmp_path, "1j20qq1JyX4,0904,0.1,0.1,0.5,0.9,12")
    assert "expected 8 columns" in message and "found 7" in message


def test_bad_row_non_numeric_box(tmp_path):
    _, message = _bad_row(tmp_path, "1j20qq1JyX4,0904,0.1,abc,0.5,0.9,12,0")
    assert "box coordinates must be numbers" in message


def test_bad_row_x1_greater_than_x2(tmp_path):
    _, message = _bad_row(tmp_path, "1j20qq1JyX4,0904,0.6,0.1,0.5,0.9,12,0")
    assert "x1 > x2" in message


def test_bad_row_box_outside_unit_square(tmp_path):
    _, message = _bad_row(tmp_path, "1j20qq1JyX4,0904,0.1,0.1,0.5,1.01,12,0")
    assert "outside [0, 1]" in message and str(ava_files.BOX_TOLERANCE) in message


def test_gt_unknown_action_skipped_with_counted_warning(tmp_path, label_map):
    path = fx.write(tmp_path / "gt.csv", fx.GT_TRAIN + "1j20qq1JyX4,0904,0.0,0.1,1.0,0.9,2,3\n"
                                                       "1j20qq1JyX4,0905,0.2,0.2,0.4,0.4,16,4\n")
    with pytest.warns(UnknownActionWarning) as caught:
        boxes = read_box_annotations(path, label_map)
    message = str(caught[0].message)
    assert f"{path}: skipped 2 row(s)" in message and "ids [2, 16]" in message and "lines [7, 8]" in message
    assert "1 box(es) had no other label" in message
    # nothing else lost: the 904 box keeps its known label 11, the 905 box (only id 16) is dropped
    assert (boxes[-1].timestamp, np.flatnonzero(boxes[-1].labels).tolist()) == (904, [label_map.index_of(11)])
    assert len(boxes) == 4


def test_detection_unknown_action_skipped_with_counted_warning_never_an_error(tmp_path, label_map):
    rows = ("v,0902,0.1,0.1,0.5,0.9,2,0.95\nv,0902,0.1,0.1,0.5,0.9,12,0.95\n"   # 2 is outside the 60
            "v,0902,0.6,0.1,0.9,0.9,16,0.91\nv,0903,0.1,0.1,0.5,0.9,-1,0.9\n")
    path = fx.write(tmp_path / "det.csv", rows)
    with pytest.warns(UnknownActionWarning) as caught:
        boxes = read_box_annotations(path, label_map, with_scores=True)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"{path}: skipped 2 row(s)" in message and "ids [2, 16]" in message and "lines [1, 3]" in message
    assert "1 box(es) had no other label and were kept as negatives" in message
    assert [np.flatnonzero(b.labels).tolist() for b in boxes] == [[label_map.index_of(12)], [], []]
    assert [b.score for b in boxes] == pytest.approx([0.95, 0.91, 0.9])


def test_missing_frame_folder(tmp_path):
    fx.write_ava_root(tmp_path)
    (tmp_path / "frames" / "1j20qq1JyX4").rename(tmp_path / "elsewhere")
    csv = str(tmp_path / "ava_train_v2.2.csv")
    with pytest.raises(FileNotFoundError, match=f"{re.escape(csv)}:6: frame folder .*1j20qq1JyX4 of video"):
        load_keyframe_records(fx.data_config(tmp_path), "train")


def test_timestamp_outside_the_video(tmp_path):
    fx.write_ava_root(tmp_path)
    csv = fx.write(tmp_path / "ava_train_v2.2.csv", fx.GT_TRAIN + "1j20qq1JyX4,0906,0.1,0.1,0.5,0.9,12,0\n")
    with pytest.raises(ValueError, match=(f"{re.escape(csv)}:7: timestamp 906 of video '1j20qq1JyX4' is "
                                          "outside the video: its keyframe would be frame 13, but .* has 12 "
                                          "frames")):
        load_keyframe_records(fx.data_config(tmp_path), "train")
    before = fx.write(tmp_path / "ava_train_v2.2.csv", "1j20qq1JyX4,0899,0.1,0.1,0.5,0.9,12,0\n")
    with pytest.raises(ValueError, match=f"{re.escape(before)}:1: timestamp 899 .* frame -1"):
        load_keyframe_records(fx.data_config(tmp_path), "train")


def test_unreadable_jpeg(tmp_path):
    from data_pipelines.frame_index import FrameReadError, read_frame
    path = tmp_path / "image_000001.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(FrameReadError, match=f"cannot decode frame {re.escape(str(path))}"):
        read_frame(str(path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "image_000002.jpg"))):
        read_frame(str(tmp_path / "image_000002.jpg"))


def test_many_bad_rows_are_all_listed_once(tmp_path, label_map):
    rows = "".join(f"v,09{i:02d},0.1,0.1,0.5,0.9,12\n" for i in range(3)) + "v,0903,0.1,0.1,0.5,0.9,12,0\n"
    path = fx.write(tmp_path / "bad.csv", rows)
    with pytest.raises(AvaFormatError) as err:
        read_box_annotations(path, label_map)
    assert [int(m) for m in re.findall(rf"{re.escape(path)}:(\d+):", str(err.value))] == [1, 2, 3]


def test_no_warning_on_clean_files(tmp_path, label_map):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_box_annotations(fx.write(tmp_path / "gt.csv", fx.GT_TRAIN), label_map)


# ------------------------------------------------------------------------------------------- AVA-Kinetics

def _kinetics_root(tmp_path, kinetics_rows: str):
    fx.write_ava_root(tmp_path)
    (tmp_path / "kinetics").mkdir()
    # a YouTube id with '_' and '-', seconds 10..12 of its video, 2 s at 10 fps
    fx.write_video(tmp_path / "kinetics" / "ab_cd-EF_000010_000012.mp4", num_frames=20, fps=10)
    fx.write(tmp_path / "kinetics_train_v1.0.csv", kinetics_rows)
    return fx.data_config(tmp_path, dataset="ava_kinetics", kinetics_videos_dir="kinetics",
                          kinetics_train_csv="kinetics_train_v1.0.csv")


def test_kinetics_keyframe_from_the_clip_file(tmp_path):
    # the official Kinetics rows have no person_id column (7 columns); 8-column rows are accepted too
    config = _kinetics_root(tmp_path, "ab_cd-EF,11,0.1,0.2,0.5,0.9,12\nab_cd-EF,11,0.1,0.2,0.5,0.9,80,4\n")
    records = load_keyframe_records(config, "train")
    kinetics = [r for r in records if r.video_id == "ab_cd-EF"]
    assert len(records) == 4 and len(kinetics) == 1
    src = kinetics[0].source
    # second 11 of the YouTube video is 1 s into the clip [10, 12]: decoded frame 10 of 20 (0-based)
    assert src.video_path.endswith("ab_cd-EF_000010_000012.mp4") and not src.frames_dir
    assert (src.keyframe_index, src.num_frames) == (10, 20)
    assert kinetics[0].labels.sum() == 2 and kinetics[0].person_ids.tolist() == [-1]


def test_kinetics_frame_folder_preferred_when_extracted(tmp_path):
    config = _kinetics_root(tmp_path, "ab_cd-EF,11,0.1,0.2,0.5,0.9,12\n")
    fx.write_frames(tmp_path / "frames" / "ab_cd-EF_000010_000012", 4)    # at config.fps = 2: 2 s
    src = [r for r in load_keyframe_records(config, "train") if r.video_id == "ab_cd-EF"][0].source
    assert src.frames_dir.endswith("ab_cd-EF_000010_000012") and not src.video_path
    assert (src.keyframe_index, src.num_frames) == (3, 4)     # 1-based: (11 - 10) * 2 + 1


def test_kinetics_timestamp_outside_the_clip(tmp_path):
    config = _kinetics_root(tmp_path, "ab_cd-EF,13,0.1,0.2,0.5,0.9,12\n")
    csv = re.escape(str(tmp_path / "kinetics_train_v1.0.csv"))
    with pytest.raises(ValueError, match=f"{csv}:1: timestamp 13 of video 'ab_cd-EF' is outside its clip"):
        load_keyframe_records(config, "train")


def test_kinetics_clip_shorter_than_its_name(tmp_path):
    config = _kinetics_root(tmp_path, "ab_cd-EF,11,0.1,0.2,0.5,0.9,12\n")
    fx.write_video(tmp_path / "kinetics" / "ab_cd-EF_000010_000012.mp4", num_frames=5, fps=10)   # 0.5 s
    csv = re.escape(str(tmp_path / "kinetics_train_v1.0.csv"))
    with pytest.raises(ValueError, match=(f"{csv}:1: timestamp 11 of video 'ab_cd-EF' is outside the video "
                                          ".*frame 10 but the clip has 5 frames")):
        load_keyframe_records(config, "train")


def test_kinetics_missing_clip(tmp_path):
    config = _kinetics_root(tmp_path, "ab_cd-EF,11,0.1,0.2,0.5,0.9,12\nzz,5,0.1,0.2,0.5,0.9,12\n")
    csv = re.escape(str(tmp_path / "kinetics_train_v1.0.csv"))
    with pytest.raises(FileNotFoundError, match=f"{csv}:2: timestamp 5 of video 'zz': no clip zz_<start>"):
        load_keyframe_records(config, "train")
    with pytest.warns(UserWarning, match="skipped 1 Kinetics keyframe"):
        records = load_keyframe_records(config, "train", skip_missing_kinetics=True)
    assert [r.video_id for r in records] == ["-5KQ66BBWC4", "-5KQ66BBWC4", "1j20qq1JyX4", "ab_cd-EF"]


def test_seven_columns_still_an_error_for_ava_gt(tmp_path, label_map):
    path = fx.write(tmp_path / "gt.csv", "v,0902,0.1,0.1,0.5,0.9,12\n")
    with pytest.raises(AvaFormatError, match=f"{re.escape(path)}:1: expected 8 columns"):
        read_box_annotations(path, label_map)


# ---------------------------------------------------------------------------------- the real-format corpus

from tests.helpers import ava_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return ava_corpus.write_corpus(tmp_path_factory.mktemp("corpus") / "data" / "ava")


def _r50_data(root):
    """config.data of configs/ava_slowfast_r50_acar.py, unchanged but for the root."""
    from configs import ava_slowfast_r50_acar  # noqa: PLC0415

    data = ava_slowfast_r50_acar.get_config().data
    data.root = str(root)
    return data


def test_corpus_is_in_the_distributed_format(corpus):
    raw = (corpus / ava_corpus.TRAIN_PROPOSALS).read_bytes()
    assert raw.endswith(b"\r\n\r\n\r\n") and b"\r\n" in raw and b",0902," in raw
    rows = [r.split(",") for r in raw.decode().split("\r\n") if r]
    assert {len(r) for r in rows} == {8}
    ids = {int(r[6]) for r in rows}
    assert -1 in ids and ids & set(ava_corpus.OUTSIDE_60)
    assert {r[0][0] for r in rows} >= {"-", "_"}


def test_lfb_training_proposals_read_with_one_counted_warning(corpus, label_map):
    with pytest.warns(UnknownActionWarning) as caught:
        boxes = read_box_annotations(str(corpus / ava_corpus.TRAIN_PROPOSALS), label_map, with_scores=True)
    assert len(caught) == 1 and "skipped 24 row(s)" in str(caught[0].message)   # 4 x id 2 + 20 crowd rows
    by_key = {(b.video_id, b.timestamp, b.box): b for b in boxes}
    matched = by_key[("-dashFirst1", 902, (0.11, 0.16, 0.45, 0.94))]
    assert np.flatnonzero(matched.labels).tolist() == [label_map.index_of(12), label_map.index_of(80)]
    person = by_key[("-dashFirst1", 902, (0.6, 0.2, 0.8, 0.7))]
    assert not person.labels.any() and person.score == pytest.approx(0.93)
    crowd = [b for b in boxes if (b.video_id, b.timestamp) == ava_corpus.CROWD_TRAIN]
    assert len(crowd) == 60 and not any(b.labels.any() for b in crowd)   # outside the 60 or -1: negatives


def test_train_records_gt_plus_proposals_over_threshold(corpus, label_map):
    with pytest.warns(UnknownActionWarning):
        records = load_keyframe_records(_r50_data(corpus), "train")
    keys = [(r.video_id, r.timestamp) for r in records]
    assert keys == [("-dashFirst1", 902), ("-dashFirst1", 903), ("_underFirst", 902), ("_underFirst", 903),
                    ("wideVideo_2", 903)]
    first = records[0]
    # GT a (12, 80; id 2 skipped), GT b (17), the matched proposal (0.98), the person box (0.93); 0.55 dropped
    assert first.num_boxes == 4 and first.scores.tolist() == pytest.approx([1.0, 1.0, 0.98, 0.93])
    assert first.person_ids.tolist() == [0, 1, -1, -1]
    assert first.labels.sum(1).tolist() == [2, 1, 2, 0]
    assert first.source.keyframe_index == (902 - 900) * 30 + 1 and first.source.frames_dir.endswith("-dashFirst1")
    assert records[-1].num_boxes == ava_corpus.CROWD


def test_proposal_on_a_gt_box_merges_into_it(tmp_path, label_map):
    fx.write_ava_root(tmp_path)
    fx.write(tmp_path / "train_proposals.csv", "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,17,0.95\n"
                                               "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,-1,0.95\n")
    r902 = load_keyframe_records(fx.data_config(tmp_path), "train")[0]
    assert r902.num_boxes == 2 and r902.person_ids.tolist() == [1, 0] and r902.scores.tolist() == [1.0, 1.0]
    assert np.flatnonzero(r902.labels[0]).tolist() == sorted(label_map.index_of(a) for a in (12, 17, 80))


def test_proposals_alone_when_train_csv_is_empty(corpus):
    with pytest.warns(UnknownActionWarning):
        records = load_keyframe_records(_with(_r50_data(corpus), train_csv=""), "train")
    assert records[0].num_boxes == 2 and (records[0].person_ids == -1).all()


def _with(data, **fields):
    for k, v in fields.items():
        data[k] = v
    return data


def test_val_records_proposals_exclusions_and_the_crowd(corpus):
    with pytest.warns(UnknownActionWarning):
        records = load_keyframe_records(_r50_data(corpus), "val")
    keys = {(r.video_id, r.timestamp) for r in records}
    assert ava_corpus.EXCLUDED not in keys and len(records) == 2 * len(ava_corpus.VAL_VIDEOS) - 1
    crowd = [r for r in records if (r.video_id, r.timestamp) == ava_corpus.CROWD_VAL][0]
    assert crowd.num_boxes == ava_corpus.CROWD and crowd.labels.sum() == ava_corpus.CROWD // 2   # as given
    others = [r for r in records if (r.video_id, r.timestamp) != ava_corpus.CROWD_VAL]
    assert all(r.num_boxes == 2 for r in others)             # 0.97 and 0.9 kept, 0.84 < 0.85 dropped


@pytest.mark.parametrize("field, missing", [
    ("root", None), ("label_map", "ava_action_list_v2.2_for_activitynet_2019.pbtxt"),
    ("train_proposals", ava_corpus.TRAIN_PROPOSALS), ("val_proposals", ava_corpus.VAL_PROPOSALS),
    ("frames_dir", "frames"), ("exclusions", "ava_val_excluded_timestamps_v2.2.csv")])
def test_missing_data_names_the_config_field(tmp_path, field, missing):
    root = tmp_path / "data" / "ava"
    data = _r50_data(root)
    if missing is not None:
        ava_corpus.write_corpus(root, frames=False)
        target = root / missing
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ava_files.MissingDataError, match=rf"^config\.data\.{field}: ") as err:
        ava_files.check_data_files(data)
    assert "\n" not in str(err.value)

