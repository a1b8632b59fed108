"""acar_jax.result_csv: the official result CSV round-trips, and malformed files fail with file and line."""

from __future__ import annotations

import numpy as np
import pytest

from acar_jax.evaluation.result_csv import (
    read_evaluator_csv,
    read_result_csv,
    rows_from_arrays,
    write_result_csv,
)

CLASS_IDS = (1, 3, 12, 80)
GOOD = "vid_a,0902,0.1,0.2,0.3,0.4,12,0.5\nvid_b,903,0.0,0.0,1.0,1.0,80,0.25\n"


def _file(tmp_path, text, name="r.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_write_then_read_round_trips_exactly_with_full_precision(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    vids = [f"-vid{i % 3}_x" for i in range(n)]   # AVA ids may start with '-'
    ts = rng.integers(902, 1799, n)
    boxes = rng.random((n, 4))
    actions = rng.choice(CLASS_IDS, n)
    scores = rng.random(n)
    path = tmp_path / "out.csv"
    write_result_csv(path, vids, ts, boxes, actions, scores, box_decimals=None, score_decimals=None)
    rows = read_result_csv(path, CLASS_IDS)
    assert list(rows.video_id) == vids
    np.testing.assert_array_equal(rows.timestamp, ts)
    np.testing.assert_array_equal(rows.boxes, boxes)     # bit-exact
    np.testing.assert_array_equal(rows.action_id, actions)
    np.testing.assert_array_equal(rows.score, scores)


def test_write_rounds_like_the_reference_by_default(tmp_path):
    path = tmp_path / "out.csv"
    write_result_csv(path, ["v"], [902], [[0.12345, 0.5, 0.9999, 1.0]], [12], [0.98765])
    assert path.read_text() == "v,902,0.123,0.500,1.000,1.000,12,0.988\n"


def test_write_rejects_bad_shapes_and_non_finite(tmp_path):
    with pytest.raises(ValueError, match="boxes has shape"):
        write_result_csv(tmp_path / "x.csv", ["v"], [1], [[0, 0, 1]], [1], [0.5])
    with pytest.raises(ValueError, match="finite"):
        write_result_csv(tmp_path / "x.csv", ["v"], [1], [[0, 0, 1, 1]], [1], [np.nan])


def test_read_result_csv_parses_official_rows(tmp_path):
    rows = read_result_csv(_file(tmp_path, GOOD), CLASS_IDS)
    assert list(rows.video_id) == ["vid_a", "vid_b"]
    np.testing.assert_array_equal(rows.timestamp, [902, 903])
    np.testing.assert_array_equal(rows.boxes, [[0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]])
    np.testing.assert_array_equal(rows.score, [0.5, 0.25])


@pytest.mark.parametrize("text, line, message", [
    (GOOD + "vid_c,904,0.1,0.2,0.3,0.4,12\n", 3, r"expected 8 columns.*found 7"),
    ("vid_c,904,0.1,0.2,0.3,0.4,12,0.5,9\n" + GOOD, 1, r"expected 8 columns.*found 9"),
    (GOOD + "vid_c,904,0.1,0.2,0.3,0.4,2,0.5\n", 3, r"action id 2 is not in the label map"),
    (GOOD + "vid_c,904,0.1,0.2,0.3,0.4,12,nan\n", 3, r".*must be finite"),
    (GOOD + "vid_c,904,0.1,0.2,0.3,0.4,12,NaN\n", 3, r".*must be finite"),
    (GOOD + "vid_c,904,0.1,inf,0.3,0.4,12,0.5\n", 3, r".*must be finite"),
    (GOOD + "vid_c,904,0.1,0.2,0.3,0.4,12,high\n", 3, r"score \(column 8\) must be a number, found 'high'"),
    (GOOD + "vid_c,904.5,0.1,0.2,0.3,0.4,12,0.5\n", 3, r"timestamp must be an integer"),
    (GOOD + "vid_c,904,0.1,0.2,0.3,0.4,walk,0.5\n", 3, r"action_id must be an integer"),
    (GOOD + "vid_c,904,0.1,zero,0.3,0.4,12,0.5\n", 3, r"box coordinates must be numbers"),
    ("video_id,timestamp,x1,y1,x2,y2,action_id,score\n" + GOOD, 1, r"timestamp must be an integer"),
    (GOOD + "\n\n" + "vid_c,904,0.1,0.2,0.3,0.4,12\n", 5, r"expected 8 columns.*found 7"),  # blank lines skipped
    (GOOD + "\n" + GOOD + "vid_c,904,0.1,0.2,0.3,0.4,12,nan\n", 6, r".*must be finite"),
])
def test_read_result_csv_names_file_and_line_of_the_bad_row(tmp_path, text, line, message):
    path = _file(tmp_path, text, "bad.csv")
    with pytest.raises(ValueError, match=rf"bad\.csv:{line}: {message}"):
        read_result_csv(path, CLASS_IDS)


def test_blank_lines_are_skipped_as_the_dataset_readers_skip_them(tmp_path):
    want = read_result_csv(_file(tmp_path, GOOD, "plain.csv"), CLASS_IDS)
    for i, text in enumerate([GOOD + "\n", GOOD + "\r\n\r\n", "\n" + GOOD, GOOD.replace("\n", "\n\n", 1)]):
        for read in (lambda p: read_result_csv(p, CLASS_IDS), read_evaluator_csv):
            got = read(_file(tmp_path, text, f"blank{i}.csv"))
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.score, want.score)
            assert got.video_id.tolist() == want.video_id.tolist()
    assert len(read_evaluator_csv(_file(tmp_path, "\n \n", "blank_only.csv"))) == 0


def test_read_evaluator_csv_accepts_gt_mixed_columns_and_any_class(tmp_path):
    # GT: 8th column is a person id (read as a score, as the official reader does); 7-column rows score 1.0.
    text = "v,902,0.1,0.2,0.3,0.4,2,7\nv,+903,0.1,0.2,0.3,0.4,12\n"
    rows = read_evaluator_csv(_file(tmp_path, text))
    np.testing.assert_array_equal(rows.action_id, [2, 12])
    np.testing.assert_array_equal(rows.score, [7.0, 1.0])
    np.testing.assert_array_equal(rows.timestamp, [902, 903])


def test_fast_and_line_by_line_readers_agree(tmp_path):
    from acar_jax.evaluation import result_csv
    rng = np.random.default_rng(1)
    n = 200
    lines = [f"v{rng.integers(5)},{rng.integers(900, 1800)},{rng.random()!r},{rng.random():.3f},"
             f"{rng.random()},{rng.random():.17g},{rng.choice(CLASS_IDS)},{rng.random():.3f}\n"
             for _ in range(n)]
    path = _file(tmp_path, "".join(lines))
    fast = result_csv._read_fast(str(path))
    slow = result_csv._read_slow(str(path), columns=(7, 8))
    for name in ("timestamp", "boxes", "action_id", "score"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
    assert list(fast.video_id) == list(slow.video_id)


def test_rows_from_arrays_matches_reading_the_written_file(tmp_path):
    rows = rows_from_arrays(["b", "a", "b"], [1, 2, 3], np.eye(3, 4), [1, 3, 12], [0.5, 0.25, 0.125])
    assert list(rows.video_id) == ["b", "a", "b"]
    assert rows.where(2).endswith(":3")


def test_crlf_line_ends_and_a_missing_final_newline_read_the_same(tmp_path):
    want = read_result_csv(_file(tmp_path, GOOD, "lf.csv"), CLASS_IDS)
    for name, text in (("crlf.csv", GOOD.replace("\n", "\r\n")), ("nofinal.csv", GOOD.rstrip("\n"))):
        got = read_result_csv(_file(tmp_path, text, name), CLASS_IDS)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.score, want.score)
        assert list(got.video_id) == list(want.video_id)
