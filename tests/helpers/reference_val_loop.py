"""Oracle of ACAR-Net's evaluation, written from the reference's code semantics (never imported from it): what
its `main.py` val loop writes into the result CSV for given frames, boxes and torch weights.

The path, as the reference runs it (notes per step name the reference file):
- sample (its annotation pkl, `datasets/ava.py`): per keyframe `video`, `time`, `start_frame = keyframe - 45`,
  `n_frames = 91`, `format_str = 'image_%06d.jpg'`, and the boxes as `labels[i]['bounding_box']`
  (normalised x1, y1, x2, y2 of the original frame). The keyframe of second T is frame (T - start) * fps + 1.
  Val boxes are the detections with score >= the threshold, in file order, one per distinct coordinate string.
- frames: indices start_frame .. start_frame + n_frames - 1 through `TemporalCenterCrop(size, step)`
  (`datasets/temporal_transforms.py`: centre crop of `size`, looped from its start when short, then `[::step]`);
  each frame PIL `Image.open(...).convert('RGB')`.
- each view's spatial transform (`datasets/spatial_transforms.py`): `Scale(short)` (short side to `short`, the
  long side `int()`-truncated, PIL BILINEAR; untouched when the short side already matches), then a horizontal
  flip for a flipped view, `ToTensor(norm_value)` and `Normalize(mean, std)`; stacked (C, T, H, W).
- one clip per batch (`batch_size: 1`), so `batch_pad` pads nothing and the pad ratio is 1.
- neck (`models/necks/basic.py`, `utils.get_bbox_after_aug`): each box clipped to the image, dropped when its
  clipped area is <= 0 (`aug_threshold` 0), mirrored in a flipped view; rois `[0, x1, y1, x2, y2]`.
- model: the project's torch oracle (tests/helpers/torch_slowfast.py + torch_heads.py) on the unpadded clip.
- fusion (`models/__init__.py`): per box, the mean of its logits over the views in which it survived.
- prediction (`losses.py` `ava_pose_softmax_func`): softmax over the first 13 logits, sigmoid over the rest,
  clamped to [0, 1].
- CSV (`main.py`): per box in sample order, `"%s,%s,%.3f,%.3f,%.3f,%.3f"` of (video, time, the pkl box), then
  per class in label-map order `",%d,%s\\n"` of (AVA id, `'%.3f' % score`). A sample with no surviving box writes
  nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import torch
from PIL import Image


@dataclasses.dataclass
class Sample:
    """One entry of the reference's annotation pkl (the fields its val loop reads)."""
    video: str
    time: int
    start_frame: int
    n_frames: int
    boxes: list[list[float]]          # labels[i]['bounding_box']
    format_str: str = "image_%06d.jpg"


def samples_from_detections(path: str, threshold: float, *, fps: int = 30, start_second: int = 900,
                            excluded: set[tuple[str, int]] = frozenset()) -> list[Sample]:
    """The val pkl's samples from an LFB-style detections CSV (video,time,x1,y1,x2,y2,action,score)."""
    boxes: dict[tuple[str, int], dict[tuple[str, ...], list[float]]] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or float(row[7]) < threshold or (row[0], int(row[1])) in excluded:
                continue
            keyframe = boxes.setdefault((row[0], int(row[1])), {})
            keyframe.setdefault(tuple(row[2:6]), [float(v) for v in row[2:6]])
    samples = []
    for (video, time), by_coords in boxes.items():
        mid = (time - start_second) * fps + 1
        samples.append(Sample(video, time, mid - 45, 91, list(by_coords.values())))
    return samples


def temporal_center_crop(indices: list[int], size: int, step: int) -> list[int]:
    """TemporalCenterCrop(size, step): the centred `size` indices, looped when short, every `step`-th."""
    center = len(indices) // 2
    begin = max(0, center - size // 2)
    out = indices[begin:min(begin + size, len(indices))]
    for index in out:
        if len(out) >= size:
            break
        out.append(index)
    return out[::step]


def scale(img: Image.Image, short: int) -> Image.Image:
    """Scale(short): the short side to `short`, the long side int()-truncated, PIL BILINEAR."""
    w, h = img.size
    if (w <= h and w == short) or (h <= w and h == short):
        return img
    if w < h:
        return img.resize((short, int(short * h / w)), Image.BILINEAR)
    return img.resize((int(short * w / h), short), Image.BILINEAR)


def load_clip(frames_dir: str, sample: Sample, *, num_frames: int, step: int, short: int, flip: bool,
              norm_value: float, mean, std) -> torch.Tensor:
    """[1, C, T, H, W] float32: the sample's frames through the view's transforms (one clip, unpadded)."""
    indices = list(range(sample.start_frame, sample.start_frame + sample.n_frames))
    frames = []
    for i in temporal_center_crop(indices, num_frames * step, step):
        path = os.path.join(frames_dir, sample.video, sample.format_str % i)
        with Image.open(path) as img:
            img = scale(img.convert("RGB"), short)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, np.uint8).copy()).permute(2, 0, 1).float().div(norm_value)
        for c in range(3):
            x[c] = (x[c] - mean[c]) / std[c]
        frames.append(x)
    return torch.stack(frames, 1).unsqueeze(0)


def view_rois(boxes: list[list[float]], flip: bool) -> tuple[torch.Tensor, list[int]]:
    """The neck: clipped, zero-area boxes dropped, mirrored when flipped -> rois [R, 5] and the kept ids."""
    rows, kept = [], []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        x1, y1, x2, y2 = min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0), min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0)
        if (x2 - x1) * (y2 - y1) <= 0:
            continue
        if flip:
            x1, x2 = 1.0 - x2, 1.0 - x1
        rows.append([0.0, x1, y1, x2, y2])
        kept.append(i)
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5), kept


def pose_softmax(logits: torch.Tensor, num_pose: int = 13) -> torch.Tensor:
    """ava_pose_softmax_func: softmax over the pose logits, sigmoid over the rest, clamped to [0, 1]."""
    return torch.clamp(torch.cat([torch.softmax(logits[:, :num_pose], 1), torch.sigmoid(logits[:, num_pose:])],
                                 1), 0, 1)


def val_loop_csv(samples: list[Sample], frames_dir: str, backbone: torch.nn.Module, head: torch.nn.Module, *,
                 views: list[tuple[int, bool]], class_ids: list[int], num_frames: int, step: int,
                 norm_value: float, mean, std, num_pose: int = 13) -> list[str]:
    """The CSV lines the reference's val loop writes for `samples` (in sample order)."""
    lines = []
    for sample in samples:
        total = torch.zeros(len(sample.boxes), len(class_ids))
        count = torch.zeros(len(sample.boxes))
        for short, flip in views:
            rois, kept = view_rois(sample.boxes, flip)
            if not kept:
                continue
            clip = load_clip(frames_dir, sample, num_frames=num_frames, step=step, short=short, flip=flip,
                             norm_value=norm_value, mean=mean, std=std)
            with torch.no_grad():
                slow, fast = backbone(clip)
                logits = head([slow, fast], rois, [0, len(kept)], [(1.0, 1.0)])
            total[kept] += logits
            count[kept] += 1
        seen = torch.nonzero(count > 0).flatten().tolist()
        if not seen:
            continue   # num_rois == 0: the val loop skips the batch
        scores = pose_softmax(total[seen] / count[seen, None], num_pose)
        for k, i in enumerate(seen):
            prefix = "%s,%s,%.3f,%.3f,%.3f,%.3f" % (sample.video, sample.time, *sample.boxes[i])  # noqa: UP031
            for cls, action_id in enumerate(class_ids):
                lines.append(prefix + ",%d,%s" % (action_id, "%.3f" % scores[k][cls]))  # noqa: UP031
    return lines
