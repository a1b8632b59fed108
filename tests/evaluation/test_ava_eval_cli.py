"""`python -m acar_jax.evaluation.ava_metric` as a user runs it (a subprocess per input): bad input gives one line
`error: <file>:<line>: ...` on stderr, exit status 1 and no traceback; what the official evaluator accepts
(trailing blank lines, detections of classes outside the label map, no detections) is accepted, with a counted
one-line warning where the result is probably not what was meant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import paths

ROOT = paths.REPO
LABEL_MAP = paths.AVA_LABEL_MAP
GT = "vid,0902,0.100,0.100,0.500,0.900,12,0\nvid,0902,0.600,0.100,0.900,0.900,17,1\n"
DET = "vid,902,0.100,0.100,0.500,0.900,12,0.900\nvid,902,0.600,0.100,0.900,0.900,17,0.800\n"


def _cli(tmp_path: Path, gt: str = GT, det: str = DET, label_map: str | None = None, excl: str | None = None,
         ) -> subprocess.CompletedProcess:
    (tmp_path / "gt.csv").write_text(gt)
    (tmp_path / "det.csv").write_text(det)
    args = ["-g", str(tmp_path / "gt.csv"), "-d", str(tmp_path / "det.csv")]
    if label_map is not None:
        (tmp_path / "labels.pbtxt").write_text(label_map)
        args += ["-l", str(tmp_path / "labels.pbtxt")]
    if excl is not None:
        (tmp_path / "excl.csv").write_text(excl)
        args += ["-e", str(tmp_path / "excl.csv")]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "acar_jax.evaluation.ava_metric", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def test_wrong_column_count_names_file_and_line(tmp_path):
    _assert_one_line_error(_cli(tmp_path, det=DET + "vid,902,0.1,0.1,0.5,0.9\n"), "det.csv:3", "columns")


def test_non_integer_timestamp_names_file_and_line(tmp_path):
    _assert_one_line_error(_cli(tmp_path, gt=GT + "vid,09x2,0.1,0.1,0.5,0.9,12,0\n"), "gt.csv:3", "timestamp")


def test_non_numeric_score_names_file_and_line(tmp_path):
    _assert_one_line_error(_cli(tmp_path, det="vid,902,0.1,0.1,0.5,0.9,12,high\n"), "det.csv:1", "score")


def test_non_finite_score_names_file_and_line(tmp_path):
    _assert_one_line_error(_cli(tmp_path, det=DET + "vid,902,0.1,0.1,0.5,0.9,14,nan\n"), "det.csv:3", "finite")


def test_inverted_gt_box_names_file_and_line(tmp_path):
    _assert_one_line_error(_cli(tmp_path, gt=GT + "vid,0903,0.5,0.1,0.4,0.9,12,0\n"), "gt.csv:3", "x1 > x2")


def test_line_after_a_blank_line_keeps_its_own_number(tmp_path):
    _assert_one_line_error(_cli(tmp_path, det=DET + "\n\nvid,902,0.1,0.1,0.5\n"), "det.csv:5", "columns")


def test_malformed_label_map_names_file_and_line(tmp_path):
    _assert_one_line_error(_cli(tmp_path, label_map="item {\n  name: \"stand\"\n  id: 12\n"), "labels.pbtxt")


def test_missing_file_is_named(tmp_path):
    proc = _cli(tmp_path)
    (tmp_path / "det.csv").unlink()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "acar_jax.evaluation.ava_metric", "-g", str(tmp_path / "gt.csv"), "-d",
                           str(tmp_path / "det.csv")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    _assert_one_line_error(proc, "det.csv", "No such file")


def test_binary_file_is_named(tmp_path):
    (tmp_path / "bin").mkdir()
    proc = _cli(tmp_path / "bin", det="")
    (tmp_path / "bin" / "det.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "acar_jax.evaluation.ava_metric",
                           "-g", str(tmp_path / "bin" / "gt.csv"),
                           "-d", str(tmp_path / "bin" / "det.csv")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    _assert_one_line_error(proc, "det.csv", "UTF-8")


def _map_line(proc: subprocess.CompletedProcess) -> float:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("mAP@0.5IOU: ")
    return float(last.split(": ")[1])


def test_trailing_blank_lines_and_crlf_are_accepted(tmp_path):
    plain = _map_line(_cli(tmp_path))
    crlf = _map_line(_cli(tmp_path, gt=(GT + "\n").replace("\n", "\r\n"), det=DET + "\n\n  \n",
                          excl="other,0902\n\n"))
    assert plain == crlf == 1.0


def test_unknown_class_ids_are_dropped_with_a_counted_warning(tmp_path):
    proc = _cli(tmp_path, det=DET + "vid,902,0.1,0.1,0.5,0.9,2,0.99\nvid,902,0.1,0.1,0.5,0.9,81,0.99\n"
                                  "vid,902,0.6,0.1,0.9,0.9,81,0.98\n")
    assert _map_line(proc) == 1.0          # the official evaluator filters them: the mAP is unchanged
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "dropped 3 of 5 detection rows" in warnings[0] and "2, 81" in warnings[0]


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_detections_score_zero_with_a_warning(tmp_path, content):
    proc = _cli(tmp_path, det=content)
    assert _map_line(proc) == 0.0
    assert any(line.startswith("warning: ") and "no detections" in line for line in proc.stderr.splitlines())
