"""acar_jax.evaluation.ensemble and its CLI tools/ensemble.py: per-class AP weights, exact box matching across
models, fused CSV end to end."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from acar_jax.evaluation import ava_metric, ensemble, report
from acar_jax.evaluation.result_csv import read_result_csv
from tests.helpers import paths

ROOT = paths.REPO
LABEL_MAP = paths.AVA_LABEL_MAP
CLASS_IDS = tuple(ava_metric.read_label_map(str(LABEL_MAP)).ids)

_spec = importlib.util.spec_from_file_location("ensemble_cli", ROOT / "tools" / "ensemble.py")
ensemble_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ensemble_cli)

A, B = (0.1, 0.1, 0.4, 0.5), (0.5, 0.2, 0.9, 0.7)


def _write(path, rows):
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def test_weights_are_proportional_to_ap_per_class_with_uniform_fallback():
    ap = np.array([[0.2, 0.0, np.nan, 0.5],
                   [0.6, 0.0, np.nan, np.nan]])
    w = ensemble.ap_weights(ap)
    np.testing.assert_allclose(w, [[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 0.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(ensemble.ap_weights(ap, power=2.0)[:, 0], [0.1, 0.9], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="num_models, num_classes"):
        ensemble.ap_weights(np.zeros(3))


def test_fuse_matches_rows_by_exact_key_in_any_order(tmp_path):
    m0 = _write(tmp_path / "m0.csv", [("v", 902, *A, 12, 0.5), ("v", 902, *A, 80, 0.25),
                                      ("v", 903, *B, 12, 1.0)])
    m1 = _write(tmp_path / "m1.csv", [("v", 903, *B, 12, 0.0), ("v", 902, *A, 12, 1.0),
                                      ("v", 902, *A, 80, 0.75)])
    rows = [read_result_csv(p, CLASS_IDS) for p in (m0, m1)]
    w = np.full((2, len(CLASS_IDS)), 0.5)
    w[:, CLASS_IDS.index(12)] = [0.25, 0.75]
    fused = ensemble.fuse(rows, w, CLASS_IDS)
    np.testing.assert_allclose(fused, [0.25 * 0.5 + 0.75 * 1.0, 0.5 * 0.25 + 0.5 * 0.75, 0.25 * 1.0 + 0.0],
                               rtol=0, atol=1e-15)


def test_unmatched_or_repeated_rows_name_file_and_line(tmp_path):
    m0 = _write(tmp_path / "m0.csv", [("v", 902, *A, 12, 0.5), ("v", 903, *B, 12, 1.0)])
    m1 = _write(tmp_path / "m1.csv", [("v", 902, *A, 12, 0.5), ("v", 903, 0.5, 0.2, 0.9, 0.71, 12, 1.0)])
    rows = [read_result_csv(p, CLASS_IDS) for p in (m0, m1)]
    with pytest.raises(ValueError, match=r"m0\.csv:2: row .* has no match in .*m1\.csv"):
        ensemble.align_rows(rows)
    m2 = _write(tmp_path / "m2.csv", [("v", 902, *A, 12, 0.5), ("v", 903, *B, 12, 1.0),
                                      ("v", 904, *B, 12, 1.0)])
    with pytest.raises(ValueError, match=r"m2\.csv:3: row .* has no match in .*m0\.csv"):
        ensemble.align_rows([rows[0], read_result_csv(m2, CLASS_IDS)])
    dup = _write(tmp_path / "dup.csv", [("v", 902, *A, 12, 0.5), ("v", 903, *B, 12, 1.0),
                                        ("v", 902, *A, 12, 0.1)])
    with pytest.raises(ValueError, match=r"dup\.csv:3: repeats the row at line 1"):
        ensemble.align_rows([rows[0], read_result_csv(dup, CLASS_IDS)])


def _model_rows(rng, keys, quality):
    """Result rows for every (keyframe, box, class); GT classes score higher by `quality`."""
    rows = []
    for (vid, ts, box, labels) in keys:
        for c in CLASS_IDS:
            s = np.clip(rng.normal(quality if c in labels else 0.0, 0.3), 0, 1)
            rows.append((vid, ts, *box, c, f"{s:.3f}"))
    return rows


def test_cli_fuses_with_ap_tables_or_held_out_results(tmp_path):
    rng = np.random.default_rng(0)
    keys = [(f"v{i % 3}", 902 + i, A if i % 2 else B, {12, 80} if i % 2 else {17}) for i in range(12)]
    gt_rows = [(v, t, *box, c, 0) for v, t, box, labels in keys for c in sorted(labels)]
    gt = _write(tmp_path / "gt.csv", gt_rows)
    models = [_write(tmp_path / f"m{m}.csv", _model_rows(rng, keys, q)) for m, q in enumerate((0.8, 0.2))]
    # Held-out APs computed by the tool (here the same split: the better model gets the larger weights).
    out = tmp_path / "fused.csv"
    ensemble_cli.main(["-l", str(LABEL_MAP), "--results", *map(str, models),
                   "--heldout_results", *map(str, models), "--groundtruth", str(gt), "-o", str(out)])
    fused = read_result_csv(out, CLASS_IDS)
    results = [read_result_csv(p, CLASS_IDS) for p in models]
    ap = np.array([[ava_metric.evaluate_frame_map(LABEL_MAP, gt, p).ap_by_id()[c] for c in CLASS_IDS] for p in models])
    want = ensemble.fuse(results, ensemble.ap_weights(ap), CLASS_IDS)
    np.testing.assert_array_equal(fused.score, want)              # written at full precision
    np.testing.assert_array_equal(fused.boxes, results[0].boxes)
    # The same from per-class AP tables written by report.
    tables = []
    for m, p in enumerate(models):
        tables.append(tmp_path / f"m{m}_ap.csv")
        report.write_table_csv(tables[-1], ava_metric.evaluate_frame_map(LABEL_MAP, gt, p))
    out2 = tmp_path / "fused2.csv"
    ensemble_cli.main(["-l", str(LABEL_MAP), "--results", *map(str, models),
                   "--per_class_ap", *map(str, tables), "-o", str(out2)])
    assert out2.read_text() == out.read_text()
    # An ensemble of one model with itself reproduces its scores.
    out3 = tmp_path / "self.csv"
    ensemble_cli.main(["-l", str(LABEL_MAP), "--results", str(models[0]), str(models[0]), "--per_class_ap",
                   str(tables[0]), str(tables[1]), "-o", str(out3), "--score_decimals", "3"])
    assert out3.read_text() == models[0].read_text()
