"""Transforms against the reference's semantics, transcribed here in numpy as the oracle.

Oracles: `Scale.__call__` (datasets/spatial_transforms.py), `bbox_jitter(num=1)` and `get_bbox_after_aug`
with `aug_threshold=0` for the full-image crop box (models/necks/utils.py), written from the reference code.
"""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_pipelines import transforms


def _ref_scale(w: int, h: int, size: int) -> tuple[int, int]:
    """Reference Scale: returns (w, h) of the output."""
    if (w <= h and w == size) or (h <= w and h == size):
        return w, h
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


def _ref_jitter_then_aug(bbox, uniform, delta, flip):
    """bbox_jitter(num=1), U(-delta, delta) = (2u - 1) * delta, then get_bbox_after_aug(crop [0, 0, 1, 1])."""
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    j = (2 * np.asarray(uniform, np.float64) - 1) * delta
    b = [max(bbox[0] + j[0] * w, 0.), min(bbox[1] + j[1] * h, 1.),
         max(bbox[2] + j[2] * w, 0.), min(bbox[3] + j[3] * h, 1.)]
    left = max(min(b[0], 1.), 0.)
    right = max(min(b[2], 1.), 0.)
    top = max(min(b[1], 1.), 0.)
    bottom = max(min(b[3], 1.), 0.)
    if (bottom - top) * (right - left) <= (b[3] - b[1]) * (b[2] - b[0]) * 0.:
        return None
    ret = [left, top, right, bottom]
    if flip:
        ret = [1. - ret[2], ret[1], 1. - ret[0], ret[3]]
    return ret


@pytest.mark.parametrize("h, w, size", [(340, 453, 256), (453, 340, 256), (256, 400, 256), (300, 300, 256),
                                        (360, 640, 320), (96, 128, 96), (100, 133, 288), (480, 271, 256)])
def test_resized_hw_matches_reference_scale(h, w, size):
    ow, oh = _ref_scale(w, h, size)
    assert transforms.resized_hw(h, w, size) == (oh, ow)


def test_jitter_clamp_flip_match_reference_law():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 0.5, [40, 2]), rng.uniform(0.5, 1, [40, 2])], 1)[:, [0, 1, 2, 3]]
    # edge cases: touching every border, a box right of the image (nothing left after the clamp: dropped)
    boxes = np.concatenate([boxes, [[0.0, 0.0, 1.0, 1.0], [1.0, 0.2, 1.05, 0.4], [0.0, 0.98, 0.1, 1.0]]])
    uniform = rng.uniform(0, 1, boxes.shape)
    for flip in (False, True):
        got = transforms.jitter_boxes(tf.constant(boxes, tf.float32), tf.constant(uniform, tf.float32), 0.075)
        got, keep = transforms.clamp_boxes(got)
        if flip:
            got = transforms.flip_boxes(got)
        got, keep = got.numpy(), keep.numpy()
        for i in range(len(boxes)):
            want = _ref_jitter_then_aug(boxes[i], uniform[i], 0.075, flip)
            assert keep[i] == (want is not None), f"box {i}: keep {keep[i]}, reference {want}"
            if want is not None:
                np.testing.assert_allclose(got[i], want, atol=1e-6, err_msg=f"box {i} flip={flip}")
    assert not keep[-2]


def test_augment_boxes_is_a_pure_function_of_the_key():
    boxes = tf.constant([[0.1, 0.2, 0.4, 0.8], [0.5, 0.1, 0.9, 0.6]], tf.float32)
    draws = {}
    for k in range(16):
        key = tf.constant([7, k], tf.int64)
        a = transforms.augment_boxes(boxes, key, hflip=True, jitter=0.075)
        b = transforms.augment_boxes(boxes, key, hflip=True, jitter=0.075)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        draws[k] = (a[0].numpy(), bool(a[2].numpy()))
    flips = [f for _, f in draws.values()]
    assert 0 < sum(flips) < len(flips), "16 keys should give both flipped and unflipped draws"
    assert len({d[0].tobytes() for d in draws.values()}) == len(draws), "other keys must jitter differently"
    no_aug = transforms.augment_boxes(boxes, tf.constant([7, 0], tf.int64), hflip=False, jitter=0.0)
    np.testing.assert_array_equal(no_aug[0].numpy(), boxes.numpy())
    assert not no_aug[2].numpy()


def test_normalize_then_pad_leaves_padding_zero():
    clip = tf.fill([2, 3, 4, 3], 255.0)
    out = transforms.normalize_clip(clip, 255.0, (0.45,) * 3, (0.225,) * 3)
    out = transforms.pad_clip(out, tf.constant([5, 7])).numpy()
    assert out.shape == (2, 5, 7, 3)
    np.testing.assert_allclose(out[:, :3, :4], (1 - 0.45) / 0.225, rtol=1e-6)
    assert (out[:, 3:] == 0).all() and (out[:, :, 4:] == 0).all()


@pytest.mark.parametrize("h, w, size", [(68, 90, 32), (90, 68, 48), (340, 453, 256), (32, 50, 32)])
def test_resize_is_the_reference_scale(h, w, size):
    """The reference's Scale is PIL BILINEAR on the uint8 frame (a no-op at the right size)."""
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, [h // 2, w // 2, 3]).round().astype(np.uint8)
    img = np.asarray(Image.fromarray(img).resize((w, h), Image.NEAREST))
    ow, oh = _ref_scale(w, h, size)
    pil = Image.fromarray(img)
    ref = np.asarray(pil if (ow, oh) == (w, h) else pil.resize((ow, oh), Image.BILINEAR), np.float32)
    got = transforms.resize_clip(tf.constant(img[None]), tf.constant(transforms.resized_hw(h, w, size)))
    got = got.numpy()[0]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, ref)


def test_jpeg_decode_is_pils(tmp_path):
    """The pipeline's TF decode (INTEGER_ACCURATE) gives the reference's PIL pixels exactly."""
    from data_pipelines import clips

    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(120, 40, [34, 45, 3]), 0, 255).astype(np.uint8)
    path = str(tmp_path / "image_000001.jpg")
    Image.fromarray(img).resize((90, 68), Image.BILINEAR).save(path, quality=85)
    loader = clips._ClipLoader(_tiny_data_config(), 3, train=False)
    got = loader._decode({"paths": tf.constant([path]), "video_path": tf.constant(""),
                          "shard_set": tf.constant(""), "frame_idx": tf.constant([0], tf.int64)}).numpy()[0]
    with Image.open(path) as pil:
        np.testing.assert_array_equal(got, np.asarray(pil.convert("RGB")))


def _tiny_data_config():
    from configs.default import get_config

    data = get_config().data
    data.num_frames = 1
    return data
