"""acar_jax.evaluate on a tiny synthetic AVA-format dataset with fake models (deterministic functions of the
boxes), so every expected score is known:
- the CSV has one row per (surviving box, label-map class) with the boxes exactly as in the proposals file;
- a flip-invariant model gives the same scores with and without the flipped view;
- the fusion is the mean of the LOGITS over the views, then the prediction function (not the mean of scores);
- an oracle model on GT boxes scores mAP 1.0 (every score is attached to the right box and class);
- the returned mAP is what `python -m acar_jax.evaluation.ava_metric` prints for the written CSV, to the last digit;
- the per-process slices of a 2-process run sum to the single-process logits, and a real 2-process JAX run
  (CPU, gloo collectives) writes the same CSV and returns the same mAP on both processes as one process.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from acar_jax.evaluation import evaluator
from acar_jax.models.predictions import predict_scores
from configs import default
from data_pipelines import ava_files, synthetic
from tests.helpers import configs, paths

ROOT = paths.REPO


def tiny_config(root: str):
    """default.py on a tiny synthetic dataset: 3 val videos x 3 keyframes (one excluded), 9 classes."""
    cfg = configs.tiny_synthetic(root, num_train_videos=1, num_val_videos=3, keyframes_per_video=3)
    cfg.eval_batch_size = 4
    return cfg


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    cfg = tiny_config(str(tmp_path_factory.mktemp("synth") / "data"))
    synthetic.ensure_synthetic_dataset(cfg.data.root, cfg.synthetic)
    return cfg


def _with(cfg, **data_overrides):
    cfg = cfg.copy_and_resolve_references()
    for key, value in data_overrides.items():
        cfg.data[key] = value
    return cfg


_W = np.random.default_rng(0).normal(size=(4, synthetic.NUM_CLASSES)).astype(np.float32) * 3


def flip_invariant_model(clips, boxes, box_mask, valid_hw):
    """Logits from width, height, vertical centre and |horizontal centre - 0.5| of each box, in integer
    thousandths (the boxes have 3 decimals), so the flipped box gives bit-identical logits."""
    x1, y1, x2, y2 = np.moveaxis(np.rint(np.asarray(boxes, np.float64) * 1000).astype(np.int64), -1, 0)
    feats = np.stack([x2 - x1, y2 - y1, y1 + y2, np.abs(x1 + x2 - 1000)], axis=-1).astype(np.float32) / 1000
    return feats @ _W - 0.5


def x_model(clips, boxes, box_mask, valid_hw):
    """Logits that depend on the horizontal position: the flipped view sees different logits."""
    x1 = np.asarray(boxes, np.float32)[..., :1]
    return 6.0 * x1 * np.linspace(-1.0, 1.0, synthetic.NUM_CLASSES, dtype=np.float32) + 0.3


def _flip(boxes: np.ndarray) -> np.ndarray:
    return np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=-1)


def _predict(cfg, logits):
    return np.asarray(predict_scores(logits, pose_softmax=bool(cfg.train.pose_softmax),
                                     num_pose_classes=int(cfg.train.num_pose_classes)), np.float32)


def _read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


class RecordingWriter:
    """The clu MetricWriter calls evaluate makes, recorded."""

    def __init__(self):
        self.scalars, self.texts, self.images, self.flushed = {}, {}, {}, False

    def write_scalars(self, step, scalars):
        self.scalars.update({(step, k): v for k, v in scalars.items()})

    def write_texts(self, step, texts):
        self.texts.update({(step, k): v for k, v in texts.items()})

    def write_images(self, step, images):
        self.images.update({(step, k): v for k, v in images.items()})

    def flush(self):
        self.flushed = True


def _run(cfg, model, tmp_path, writer=None, **data_overrides):
    cfg = _with(cfg, **data_overrides)
    return evaluator.Evaluator(cfg, str(tmp_path)).evaluate(model, step=7, writer=writer), cfg


def test_csv_rows_are_every_box_times_every_class(config, tmp_path):
    writer = RecordingWriter()
    metrics, cfg = _run(config, flip_invariant_model, tmp_path, writer=writer)
    assert metrics["csv"] == str(tmp_path / "eval" / "results_step7.csv")
    rows = _read_csv(metrics["csv"])
    records = ava_files.load_keyframe_records(cfg.data, "val")
    label_map = ava_files.read_label_map(str(pathlib.Path(cfg.data.root) / cfg.data.label_map))
    boxes = np.concatenate([r.boxes for r in records])
    k = label_map.num_classes
    assert len(rows) == boxes.shape[0] * k and all(len(r) == 8 for r in rows)
    expected_scores = _predict(cfg, flip_invariant_model(None, boxes[None], None, None)[0])
    # The proposals file's values: video, timestamp and the box as the same decimal numbers (0.780 -> 0.78).
    proposals = {}
    with open(pathlib.Path(cfg.data.root) / cfg.data.val_proposals) as f:
        for row in csv.reader(f):
            if float(row[7]) >= cfg.data.val_proposal_threshold:
                proposals.setdefault((row[0], int(row[1])), []).append(row[2:6])
    i = 0
    for rec in records:
        for j in range(rec.num_boxes):
            block = rows[i * k:(i + 1) * k]
            written = {(r[0], r[1], *map(float, r[2:6])) for r in block}
            assert written == {(rec.video_id, str(rec.timestamp),
                                *map(float, proposals[(rec.video_id, rec.timestamp)][j]))}
            assert [int(r[6]) for r in block] == list(label_map.ids)
            np.testing.assert_array_equal(np.asarray([float(r[7]) for r in block], np.float32),
                                          expected_scores[i])
            i += 1
    excluded = ava_files.read_exclusions(str(pathlib.Path(cfg.data.root) / cfg.data.exclusions))
    assert excluded and not {(r[0], int(r[1])) for r in rows} & excluded
    assert 0.0 <= metrics["mAP"] <= 1.0
    # Report: group mAPs of the synthetic classes, table / chart files, TensorBoard scalars, text and image.
    assert set(metrics) == {"mAP", "mAP_pose", "mAP_actor", "mAP_relational", "csv"}
    for kind in ("csv", "png", "txt"):
        assert (tmp_path / "eval" / f"step7_per_class_ap.{kind}").stat().st_size > 0
    for key in ("mAP", "mAP_pose", "mAP_actor", "mAP_relational"):
        assert writer.scalars[(7, f"eval/{key}")] == metrics[key]
    assert (7, "eval/per_class_ap") in writer.texts and writer.flushed
    image = writer.images[(7, "eval/per_class_ap")]
    assert image.ndim == 4 and image.shape[-1] == 3 and image.dtype == np.uint8


def test_csv_decimals_config_writes_the_references_percent_3f(config, tmp_path):
    """eval_csv_decimals=3: every box and score as the reference's '%.3f' of the CSV box and of the float32
    score; -1 / None: full precision (the float32 score's shortest repr); the paper configs default to 3."""
    full, _ = _run(config, x_model, tmp_path / "full")
    cfg3 = config.copy_and_resolve_references()
    cfg3.eval_csv_decimals = 3
    rounded = evaluator.Evaluator(cfg3, str(tmp_path / "3")).evaluate(x_model, step=7)
    rows_full, rows_3 = _read_csv(full["csv"]), _read_csv(rounded["csv"])
    assert len(rows_full) == len(rows_3)
    assert any(len(r[7].split(".")[-1]) > 3 for r in rows_full), "full precision keeps more than 3 decimals"
    for a, b in zip(rows_full, rows_3, strict=True):
        assert a[:2] == b[:2] and a[6] == b[6]
        assert b[2:6] == [f"{float(v):.3f}" for v in a[2:6]]
        assert b[7] == f"{float(np.float32(a[7])):.3f}"
    assert evaluator.csv_decimals(None) is None and evaluator.csv_decimals(-1) is None
    assert evaluator.csv_decimals(3) == 3
    with pytest.raises(ValueError, match="eval_csv_decimals"):
        evaluator.csv_decimals(-2)
    from configs import ava_slowfast_r50_acar, ava_slowfast_r101_acar, avakinetics_slowfast_r101_acar
    for paper in (ava_slowfast_r50_acar, ava_slowfast_r101_acar, avakinetics_slowfast_r101_acar):
        assert paper.get_config().eval_csv_decimals == 3
    assert default.get_config().eval_csv_decimals == -1


def test_flip_invariant_model_scores_the_same_with_the_flip_view(config, tmp_path):
    single, _ = _run(config, flip_invariant_model, tmp_path / "single")
    both, _ = _run(config, flip_invariant_model, tmp_path / "flip", eval_flip=True)
    assert _read_csv(single["csv"]) == _read_csv(both["csv"])
    assert single["mAP"] == both["mAP"]


def test_views_are_fused_as_mean_logits_then_prediction(config, tmp_path):
    metrics, cfg = _run(config, x_model, tmp_path, eval_flip=True, eval_scales=(96, 112))
    records = ava_files.load_keyframe_records(cfg.data, "val")
    boxes = np.concatenate([r.boxes for r in records])
    plain = x_model(None, boxes[None], None, None)[0]
    flipped = x_model(None, _flip(boxes)[None], None, None)[0]
    # 4 views: 2 scales x (plain, flipped); the logits of a box do not depend on the scale here.
    fused = (((plain + flipped) + plain) + flipped) / 4
    expected = _predict(cfg, fused)
    got = np.asarray([float(r[7]) for r in _read_csv(metrics["csv"])], np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    mean_of_scores = (_predict(cfg, plain) + _predict(cfg, flipped)) / 2
    assert np.abs(got - mean_of_scores).max() > 1e-2   # the other rule would give visibly different scores


def test_oracle_on_gt_boxes_scores_map_one(config, tmp_path):
    cfg = config.copy_and_resolve_references()
    cfg.data.val_proposals = ""   # evaluate on the GT boxes
    records = ava_files.load_keyframe_records(cfg.data, "val")
    gt_boxes = np.concatenate([r.boxes for r in records])
    gt_labels = np.concatenate([r.labels for r in records])

    def oracle(clips, boxes, box_mask, valid_hw):
        flat = np.asarray(boxes, np.float32).reshape(-1, 4)
        nearest = np.abs(flat[:, None, :] - gt_boxes[None]).sum(-1).argmin(1)
        return (20.0 * gt_labels[nearest] - 10.0).reshape(*boxes.shape[:2], -1)

    metrics = evaluator.Evaluator(cfg, str(tmp_path)).evaluate(oracle, step=0)
    assert metrics["mAP"] == 1.0


def test_map_equals_the_cli_on_the_written_csv(config, tmp_path):
    metrics, cfg = _run(config, x_model, tmp_path, eval_flip=True)
    root = pathlib.Path(cfg.data.root)
    out = subprocess.run(
        [sys.executable, "-m", "acar_jax.evaluation.ava_metric", "-l", str(root / cfg.data.label_map),
         "-g", str(root / cfg.data.val_csv), "-d", metrics["csv"], "-e", str(root / cfg.data.exclusions)],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    last = out.strip().splitlines()[-1]
    assert last == f"mAP@0.5IOU: {metrics['mAP']!r}"


def test_process_slices_merge_to_the_single_process_result(config):
    """Two processes' per-view arrays (zeros for the boxes the other one saw) sum to one process's."""
    records = ava_files.load_keyframe_records(config.data, "val")
    cfg = config.copy_and_resolve_references()
    cfg.data.eval_flip = True
    kwargs = dict(batch_size=4, num_classes=synthetic.NUM_CLASSES)
    logits, survives = evaluator.run_views(records, cfg.data, x_model, **kwargs)
    parts = [evaluator.run_views(records, cfg.data, x_model, process_index=p, process_count=2, **kwargs)
             for p in range(2)]
    assert survives.all() and parts[0][1].any() and parts[1][1].any()
    assert not (parts[0][1] & parts[1][1]).any()
    np.testing.assert_array_equal(parts[0][1] | parts[1][1], survives)
    np.testing.assert_array_equal(parts[0][0] + parts[1][0], logits)


def test_wrong_logits_shape_is_named(config, tmp_path):
    def bad(clips, boxes, box_mask, valid_hw):
        return np.zeros(boxes.shape[:2] + (3,), np.float32)

    with pytest.raises(ValueError, match=r"logits_fn returned shape"):
        evaluator.Evaluator(config, str(tmp_path)).evaluate(bad, step=0)


_WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    pid, port, root, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    sys.path.insert(0, sys.argv[5])
    from tests.evaluation import test_evaluator as t
    cfg = t.tiny_config(root)
    cfg.data.eval_flip = True
    metrics = t.evaluator.Evaluator(cfg, workdir).evaluate(t.x_model, step=3)
    print("METRICS " + json.dumps(metrics))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_jax_processes_give_the_single_process_result(config, tmp_path):
    single = evaluator.Evaluator(_with(config, eval_flip=True), str(tmp_path / "one")).evaluate(x_model, step=3)
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(worker), str(p), port, config.data.root, str(tmp_path / "two"),
                               str(ROOT)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "JAX_PLATFORMS": "cpu"})
             for p in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    metrics = [json.loads(next(line for line in out.splitlines() if line.startswith("METRICS "))[8:])
               for out, _ in outs]
    assert metrics[0] == metrics[1]
    assert metrics[0]["mAP"] == single["mAP"]
    assert _read_csv(metrics[0]["csv"]) == _read_csv(single["csv"])
