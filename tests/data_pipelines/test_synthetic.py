"""The synthetic AVA-format dataset: official formats (read back by ava_files), determinism, atomic writes,
the gap rule behind its relational classes and the measured receptive field it is set beyond, and that those
classes are not linearly separable from the actor's own crop while the actor-only ones are."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from configs.default import get_config
from data_pipelines import ava_files, frame_index, synthetic
from tests.helpers import paths

REPO = str(paths.REPO)


def _synth(**overrides):
    synth = get_config().synthetic
    for key, value in overrides.items():
        synth[key] = value
    return synth


def _data_config(root):
    data = get_config().data
    data.root = root
    return data


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "data")
    synthetic.ensure_synthetic_dataset(root, _synth(seed=11, num_train_videos=10, num_val_videos=6))
    return root


def _tree_digest(root):
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, root)] = hashlib.sha1(f.read()).hexdigest()
    return digest


def test_official_formats_read_back(dataset):
    data = _data_config(dataset)
    label_map = ava_files.read_label_map(os.path.join(dataset, data.label_map))
    assert label_map.ids == tuple(c.id for c in synthetic.CLASSES)
    assert label_map.num_classes == get_config().model.num_classes == synthetic.NUM_CLASSES
    assert get_config().train.num_pose_classes == synthetic.NUM_POSE_CLASSES == 3
    train = ava_files.load_keyframe_records(data, "train")
    val = ava_files.load_keyframe_records(data, "val")
    assert len(train) == 10 * 10
    excluded = ava_files.read_exclusions(os.path.join(dataset, data.exclusions))
    scores = ava_files.read_box_annotations(os.path.join(dataset, data.val_proposals), label_map, with_scores=True)
    detected = {(b.video_id, b.timestamp) for b in scores if b.score >= data.val_proposal_threshold}
    assert len(excluded) == 2 and len(detected) > 6 * 10 * 0.9
    assert {(r.video_id, r.timestamp) for r in val} == detected - excluded, "a val record per detected keyframe"
    for rec in train:
        assert synthetic.MIN_ACTORS <= rec.num_boxes <= synthetic.MAX_ACTORS
        np.testing.assert_array_equal(rec.labels[:, :3].sum(1), 1, err_msg="exactly one pose per actor")
        assert rec.source.keyframe_index == synthetic.keyframe_frame(rec.timestamp)
    assert max(r.num_boxes for r in val) <= 8, "detections above the threshold must fit the default N_max 8"
    assert all(rec.labels.sum() == 0 for rec in val), "detections carry no actions"
    below = sum(b.score < data.val_proposal_threshold for b in scores)
    assert 0 < below < len(scores), "some proposals fall below the threshold"


def test_deterministic_given_the_seed_and_atomic(tmp_path, monkeypatch):
    small = _synth(seed=3, num_train_videos=2, num_val_videos=1, keyframes_per_video=2)
    synthetic.ensure_synthetic_dataset(str(tmp_path / "a"), small)
    synthetic.ensure_synthetic_dataset(str(tmp_path / "b"), small)
    assert _tree_digest(str(tmp_path / "a")) == _tree_digest(str(tmp_path / "b"))
    other = _synth(seed=4, num_train_videos=2, num_val_videos=1, keyframes_per_video=2)
    synthetic.ensure_synthetic_dataset(str(tmp_path / "c"), other)
    assert _tree_digest(str(tmp_path / "a")) != _tree_digest(str(tmp_path / "c"))

    stamp = os.path.getmtime(tmp_path / "a" / synthetic.TRAIN_CSV)
    synthetic.ensure_synthetic_dataset(str(tmp_path / "a"), small)          # present: left alone
    assert os.path.getmtime(tmp_path / "a" / synthetic.TRAIN_CSV) == stamp
    with pytest.raises(ValueError, match="the dataset was written with .*'seed': 3.*remove"):
        synthetic.ensure_synthetic_dataset(str(tmp_path / "a"), other)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "write_video", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        synthetic.ensure_synthetic_dataset(str(tmp_path / "d"), small)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"], "a failed write leaves nothing behind"


def test_cli_writes_the_dataset(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "tools/make_synthetic_data.py", f"--out={out}",
                    "--config.synthetic.num_train_videos=1", "--config.synthetic.num_val_videos=1",
                    "--config.synthetic.keyframes_per_video=1"], cwd=REPO, check=True)
    assert (out / "frames" / "synth_train_000" / "image_000060.jpg").is_file()
    assert (out / synthetic.LABEL_MAP_FILE).read_text().startswith('item {\n  name: "pose: tall"\n  id: 1\n}')


def test_relational_evidence_lies_beyond_the_relation_gap_at_every_frame():
    """Every actor stays inside its swept rectangle at every frame of its scene, and those rectangles (and the
    marker's) are `relation_gap` apart, so each actor's box is that far from the evidence of its relational
    classes in every frame a clip can hold."""
    synth = get_config().synthetic
    height, width, gap = int(synth.height), int(synth.width), int(synth.relation_gap)
    assert gap > synthetic.LINEAR_HEAD_REACH
    rng = np.random.default_rng(0)
    for _ in range(100):
        scene = synthetic.sample_scene(rng, height, width, gap)
        assert synthetic.MIN_ACTORS <= len(scene.actors) <= synthetic.MAX_ACTORS
        swept = [synthetic.swept_rect(a) for a in scene.actors]
        for a, (r0, c0, r1, c1) in zip(scene.actors, swept, strict=True):
            for dt in range(-synthetic.SCENE_HALF_SPAN, synthetic.SCENE_HALF_SPAN):
                f0, g0, f1, g1 = a.rect(dt)
                assert r0 <= f0 and c0 <= g0 and f1 <= r1 and g1 <= c1, (a, dt)
            assert 0 < r0 and 0 < c0 and r1 < height and c1 < width, "actors stay inside the frame"
        others = swept + ([synthetic.marker_rect(scene.marker)] if scene.marker is not None else [])
        for i, rect in enumerate(swept):
            for j, other in enumerate(others):
                if i != j:   # pixels strictly between the rectangles, along the axis that separates them most
                    rows = max(other[0] - rect[2], rect[0] - other[2])
                    cols = max(other[1] - rect[3], rect[1] - other[3])
                    assert synthetic.rect_gap(rect, other) == max(rows, cols) >= gap, (scene, i, j)


def test_linear_head_reach_bounds_what_a_roi_feature_reads():
    """LINEAR_HEAD_REACH is measured: the gradient of the default tiny backbone's RoI features (both pathways,
    the Linear head's input) w.r.t. the clip is zero at every pixel farther than that from the box, for boxes of
    the synthetic sizes at sub-cell alignments, and the bound is tight (within one 16-px feature cell)."""
    import jax
    import jax.numpy as jnp

    from acar_jax.models.detector import create_model  # noqa: PLC0415
    from acar_jax.models.head_layers import roi_features  # noqa: PLC0415

    config = get_config()
    height, width, t = int(config.synthetic.height), int(config.synthetic.width), int(config.data.num_frames)
    model = create_model(config)
    clip = jnp.asarray(np.random.default_rng(0).standard_normal((1, t, height, width, 3)), jnp.float32)
    valid_hw = jnp.array([[height, width]], jnp.int32)

    def pixels_read(box):                                      # [H, W] |d roi features / d pixel|
        def total(x):
            slow, fast = model.backbone(x)
            return sum(jnp.sum(roi_features(jnp.mean(f, axis=1), box[None, None], valid_hw, (height, width), 7, -1))
                       for f in (slow, fast))
        return jnp.abs(jax.grad(total)(clip)).sum(axis=(0, 1, 4))

    boxes = []
    for box_w, box_h in ((9, 14), (27, 14), (14, 27)):
        for offset in np.arange(0, 16, 1.5):
            c0, r0 = 180 + offset, 16 + offset / 2
            boxes.append([c0 / width, r0 / height, (c0 + box_w) / width, (r0 + box_h) / height])
    boxes = np.asarray(boxes, np.float32)
    read = np.asarray(jax.jit(jax.vmap(pixels_read))(jnp.asarray(boxes))) > 0
    widest = 0
    for box, mask in zip(boxes, read, strict=True):
        cols = np.flatnonzero(mask.any(0))
        first, last = int(np.floor(box[0] * width)), int(np.ceil(box[2] * width)) - 1   # the box's pixel columns
        reach = max(first - cols.min(), cols.max() - last)
        assert reach <= synthetic.LINEAR_HEAD_REACH, (box * width, reach)
        widest = max(widest, reach)
    assert widest > synthetic.LINEAR_HEAD_REACH - 16, f"reach {widest} px: the constant is not a measurement"


# --------------------------------------------------------------------- linear probe on the actor's own crop

def _actor_features(records) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per actor: (own, context, labels).

    own: its keyframe crop (6x6 RGB), mean/std colour, box geometry, and motion over the clip.
    context: what a head relating the actor to the whole frame and the other actors can compute (ACAR tiles
    the actor feature over the context map): own pose one-hot x the poses of the other actors (from their box
    shapes), own colour one-hot x the frame's area of each actor colour, white (marker) pixels, the frame's
    motion energy next to the actor's own.
    """
    from PIL import Image

    palette = synthetic.COLOURS.astype(np.float32)

    def colour_areas(img):                                      # pixels near each actor colour, [4]
        return (np.linalg.norm(img[..., None, :] - palette, axis=-1) < 60).sum((0, 1)).astype(np.float64)

    feats, context, labels = [], [], []
    for rec in records:
        k = rec.source.keyframe_index
        frames = [frame_index.read_frame(p).astype(np.float32)
                  for p in frame_index.frame_paths(rec.source.frames_dir, [k - 8, k, k + 6])]
        height, width = frames[0].shape[:2]
        poses = np.stack([_pose_one_hot(b, height, width) for b in rec.boxes])     # [n, 3] from box shapes
        for i, (box, label) in enumerate(zip(rec.boxes, rec.labels, strict=True)):
            c0, r0, c1, r1 = np.round(box * [width, height, width, height]).astype(int)
            crops = [f[r0:r1, c0:c1] for f in frames]
            small = [np.asarray(Image.fromarray(c.astype(np.uint8)).resize((6, 6), Image.BILINEAR),
                                np.float32).ravel() for c in crops]
            pixels = crops[1].reshape(-1, 3)
            w, h = (box[2] - box[0]) * width, (box[3] - box[1]) * height
            geometry = [*box, w, h, w / h, abs(np.log(w / h))]
            motion = np.abs(crops[2] - crops[0]).reshape(-1, 3).mean(0)
            feats.append(np.concatenate([small[1], pixels.mean(0), pixels.std(0), geometry, motion,
                                         small[2] - small[0]]))
            own_area, scene_area = colour_areas(crops[1]), colour_areas(frames[1])
            own_colour = (own_area == own_area.max()).astype(np.float64)
            own_motion = np.abs(crops[2] - crops[0]).sum() / (height * width)
            scene_motion = np.abs(frames[2] - frames[0]).mean()
            relation = np.outer(own_colour, scene_area).ravel()
            pose_relation = np.outer(poses[i], poses.sum(0) - poses[i]).ravel()
            context.append(np.concatenate([own_colour, own_area, scene_area, relation, pose_relation,
                                           [(frames[1].min(-1) > 200).mean(), scene_motion, own_motion]]))
            labels.append(label)
    return tuple(np.asarray(a, np.float64) for a in (feats, context, labels))


def _pose_one_hot(box, height, width) -> np.ndarray:
    """tall / square / wide from the box's aspect ratio (squares are 1:1, the others about 1:1.9)."""
    ratio = (box[2] - box[0]) * width / ((box[3] - box[1]) * height)
    return np.eye(3)[0 if ratio < 0.75 else 2 if ratio > 1.33 else 1]


def _standardise(train, val):
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return (train - mu) / sd, (val - mu) / sd


def _logistic_regression(x, y, steps=500, lr=0.5, l2=1e-3):
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        g = 1 / (1 + np.exp(-(x @ w + b))) - y
        w -= lr * (x.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return w, b


def _average_precision(scores, y):
    y = y[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(y) / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / y.sum())


def test_relational_classes_are_not_linearly_separable_from_the_actors_own_crop(dataset):
    """A logistic regression on the actor's own crop features: near chance on the relational classes, high on
    the actor-only ones; the same regression given the actor x context features solves the relational ones
    (their evidence is in the frames, outside the box)."""
    data = _data_config(dataset)
    data.val_proposals = ""                                     # GT boxes and labels for both splits
    own_train, ctx_train, y_train = _actor_features(ava_files.load_keyframe_records(data, "train"))
    own_val, ctx_val, y_val = _actor_features(ava_files.load_keyframe_records(data, "val"))
    own_train, own_val = _standardise(own_train, own_val)
    ctx_train, ctx_val = _standardise(ctx_train, ctx_val)
    report = []
    for j, cls in enumerate(synthetic.CLASSES):
        w, b = _logistic_regression(own_train, y_train[:, j])
        ap, prevalence = _average_precision(own_val @ w + b, y_val[:, j]), y_val[:, j].mean()
        ap_ctx = np.nan
        if cls.kind == "relational":
            w, b = _logistic_regression(ctx_train, y_train[:, j], steps=2000)
            ap_ctx = _average_precision(ctx_val @ w + b, y_val[:, j])
        report.append((cls, ap, prevalence, ap_ctx))
    table = "; ".join(f"{c.name} ({c.kind}): AP {ap:.3f} vs chance {p:.3f}"
                      + (f", with context {a:.3f}" if c.kind == "relational" else "")
                      for c, ap, p, a in report)
    for cls, ap, prevalence, ap_ctx in report:
        if cls.kind == "relational":
            assert ap < prevalence + 0.15, f"{cls.name} is linearly predictable from the own crop: {table}"
            assert ap_ctx > 0.95, f"{cls.name} should be solvable from actor x context: {table}"
        else:
            assert ap > 0.9, f"{cls.name} should be easy from the actor's own crop: {table}"
    print(f"\nlinear probe on {len(own_train)} train / {len(own_val)} val actors: {table}")


def test_frames_too_small_for_a_scene_are_a_clear_error():
    with pytest.raises(ValueError, match=r"synthetic.height/width = 32x40: no scene.*relation_gap"):
        synthetic.sample_scene(np.random.default_rng(0), 32, 40, 84)
