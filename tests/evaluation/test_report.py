"""acar_jax.eval_report: group mAPs, table CSV round trip, bar chart PNG, and metric-writer logging."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from acar_jax.evaluation import report
from acar_jax.evaluation.ava_metric import FrameMapResult


def _result() -> FrameMapResult:
    ids = (1, 14, 15, 63, 64, 80)
    names = ("bend/bow (at the waist)", "walk", "answer phone", "work on a computer", "fight/hit (a person)",
             "watch (a person)")
    ap = np.array([1.0, 0.5, np.nan, 0.25, 0.0, 0.75])
    num_gt = np.array([3, 2, 0, 4, 1, 5])
    mean = float(np.nanmean(ap))
    return FrameMapResult(ids, names, ap, num_gt, mean)


def test_groups_follow_the_ava_id_ranges():
    groups = [report.group_of(c) for c in (1, 14, 15, 63, 64, 80, 81)]
    assert groups == ["pose", "pose", "object", "object", "person", "person", "other"]
    groups = report.group_map(_result())
    assert groups == {"pose": 0.75, "object": 0.25, "person": 0.375}   # NaN class 15 left out


def test_group_without_gt_is_nan():
    r = _result()
    ap = np.where(np.array(r.class_ids) >= 64, np.nan, r.ap)
    r = FrameMapResult(r.class_ids, r.class_names, ap, r.num_gt, r.mean_ap)
    assert np.isnan(report.group_map(r)["person"])


def test_custom_groups_name_the_table_csv_and_scalars(tmp_path):
    groups = {"actor": (1, 14), "relational": (15, 63, 64)}        # class 80 in no group: "other"
    assert report.group_of(64, groups) == "relational" and report.group_of(80, groups) == "other"
    assert report.group_map(_result(), groups) == {"actor": 0.75, "relational": 0.125}
    text = report.format_table(_result(), groups)
    assert "mAP relational" in text and "mAP person" not in text
    report.write_report(_result(), tmp_path, name="val", groups=groups)
    rows = (tmp_path / "val_per_class_ap.csv").read_text().splitlines()
    assert [r.split(",")[2] for r in rows[1:]] == ["actor", "actor", "relational", "relational", "relational",
                                                   "other"]
    scalars = report.summary_scalars(_result(), groups=groups)
    assert scalars["eval/mAP_relational"] == 0.125 and "eval/mAP_pose" not in scalars


def test_table_lists_every_class_and_the_maps():
    text = report.format_table(_result())
    lines = text.splitlines()
    assert len(lines) == 2 + 6 + 3 + 1
    assert "bend/bow (at the waist)" in lines[2] and lines[2].rstrip().endswith("100.00")
    assert "n/a" in lines[4]
    assert lines[-1].split()[-1] == f"{100 * _result().mean_ap:.2f}"


def test_table_csv_round_trips(tmp_path):
    path = tmp_path / "ap.csv"
    report.write_table_csv(path, _result())
    back = report.read_table_csv(path)
    assert list(back) == list(_result().class_ids)
    for (cid, ap), want in zip(back.items(), _result().ap, strict=True):
        assert (np.isnan(ap) and np.isnan(want)) or ap == want, cid
    assert path.read_text().splitlines()[0] == "class_id,name,group,num_gt,ap"


def test_read_table_csv_names_the_bad_line(tmp_path):
    path = tmp_path / "ap.csv"
    path.write_text("class_id,name,group,num_gt,ap\n1,a,pose,3,0.5\nx,b,pose,1,0.1\n")
    with pytest.raises(ValueError, match=r"ap\.csv:3: expected class_id and ap"):
        report.read_table_csv(path)
    path.write_text("1,a,pose,3,0.5\n")
    with pytest.raises(ValueError, match=r"ap\.csv:1: expected a header"):
        report.read_table_csv(path)


def test_bar_chart_is_a_png_and_report_files_are_written(tmp_path):
    png = report.bar_chart_png(_result())
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] == 600
    paths = report.write_report(_result(), tmp_path / "report", name="val")
    for kind in ("csv", "png", "txt"):
        assert paths[kind].endswith(f"val_per_class_ap.{kind}")
        assert (tmp_path / "report" / f"val_per_class_ap.{kind}").stat().st_size > 0


class _RecordingWriter:
    """The clu MetricWriter methods log_report uses, recording their arguments."""

    def __init__(self):
        self.scalars, self.texts, self.images, self.flushed = {}, {}, {}, False

    def write_scalars(self, step, scalars):
        self.scalars[step] = dict(scalars)

    def write_texts(self, step, texts):
        self.texts[step] = dict(texts)

    def write_images(self, step, images):
        self.images[step] = dict(images)

    def flush(self):
        self.flushed = True


def test_log_report_writes_maps_per_class_ap_table_and_chart():
    writer = _RecordingWriter()
    report.log_report(writer, 7, _result(), prefix="val")
    scalars = writer.scalars[7]
    assert scalars["val/mAP"] == _result().mean_ap
    assert scalars["val/mAP_pose"] == 0.75 and scalars["val/mAP_person"] == 0.375
    assert scalars["val/AP/01_bend_bow_at_the_waist"] == 1.0
    assert "val/AP/15_answer_phone" not in scalars          # NaN (no GT): not logged
    assert "walk" in writer.texts[7]["val/per_class_ap"]
    image = writer.images[7]["val/per_class_ap"]
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and image.dtype == np.uint8
    assert writer.flushed
