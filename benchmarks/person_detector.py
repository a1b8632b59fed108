"""Quality of the demo's built-in person detector (OpenCV HOG, acar_jax/inference/detector_hog.py) on a tiny set of
real photos: recall and precision at IoU >= 0.5 against boxes annotated by hand.

    python benchmarks/person_detector.py [--thresholds 0.5,0.6,0.7] [--cache_dir ~/.cache/acar_jax_images]

The photos are not in this repository: they are sample images that PyPI packages ship (ultralytics' assets,
scikit-image's data module, matplotlib's sample data), read from the installed package when it is there with
the same bytes, else from the package's wheel, which the script fetches once with `pip download --no-deps` into
--cache_dir. Only the annotations are ours: benchmarks/data/person_boxes.csv (pixels x1,y1,x2,y2 of every
person; view = whole: the whole body is in the image, cut: part of the body is out of the frame or the person
is a head-and-shoulders portrait). Images without rows there have no person (they count false positives).

It is a tiny set (5 images with 9 people, 2 of them whole, and 4 without people), chosen because it is what is
reachable offline: it says what kind of person the detector finds, not a recall one could quote for AVA.
Detections are matched greedily by score to the unmatched annotation of highest IoU (>= 0.5), as in PASCAL VOC.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from acar_jax.inference import detector_hog  # noqa: E402

ANNOTATIONS = ROOT / "benchmarks" / "data" / "person_boxes.csv"
# image -> (PyPI distribution, version, import name, path inside the wheel, sha256 of the file)
IMAGES = {
    "bus.jpg": ("ultralytics", "8.4.190", "ultralytics", "ultralytics/assets/bus.jpg",
                "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"),
    "zidane.jpg": ("ultralytics", "8.4.190", "ultralytics", "ultralytics/assets/zidane.jpg",
                   "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"),
    "astronaut.png": ("scikit-image", "0.26.0", "skimage", "skimage/data/astronaut.png",
                      "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    "camera.png": ("scikit-image", "0.26.0", "skimage", "skimage/data/camera.png",
                   "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    "grace_hopper.jpg": ("matplotlib", "3.11.2", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                         "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    "chelsea.png": ("scikit-image", "0.26.0", "skimage", "skimage/data/chelsea.png",
                    "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    "coffee.png": ("scikit-image", "0.26.0", "skimage", "skimage/data/coffee.png",
                   "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    "rocket.jpg": ("scikit-image", "0.26.0", "skimage", "skimage/data/rocket.jpg",
                   "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    "motorcycle_left.png": ("scikit-image", "0.26.0", "skimage", "skimage/data/motorcycle_left.png",
                            "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"),
}


def _from_installed(import_name: str, path: str, sha256: str) -> bytes | None:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(next(iter(spec.submodule_search_locations))).parent / path
    if not file.is_file():
        return None
    data = file.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _from_wheel(dist: str, version: str, path: str, cache_dir: Path) -> bytes:
    stem = dist.replace("-", "_")
    wheels = sorted(cache_dir.glob(f"{stem}-{version}-*.whl"))
    if not wheels:
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        f"{dist}=={version}", "-d", str(cache_dir)], check=True)
        wheels = sorted(cache_dir.glob(f"{stem}-{version}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        return z.read(path)


def load_image(name: str, cache_dir: Path) -> np.ndarray:
    """The RGB uint8 photo `name`, checked against its sha256 (the annotations are of these exact bytes)."""
    dist, version, import_name, path, sha256 = IMAGES[name]
    data = _from_installed(import_name, path, sha256) or _from_wheel(dist, version, path, cache_dir)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{name} from {dist}=={version}:{path} is not the annotated image (sha256 differs)")
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def read_annotations(path: Path) -> dict[str, list[tuple[np.ndarray, str]]]:
    """image -> [(x1y1x2y2 pixels, view)]; every image of IMAGES has an entry (empty: no person)."""
    boxes: dict[str, list[tuple[np.ndarray, str]]] = {name: [] for name in IMAGES}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if row["image"] not in IMAGES or row["view"] not in ("whole", "cut"):
                raise ValueError(f"{path}:{line}: unknown image {row['image']!r} or view {row['view']!r}")
            boxes[row["image"]].append((np.asarray([float(row[k]) for k in ("x1", "y1", "x2", "y2")]), row["view"]))
    return boxes


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def match(detections: list[tuple[np.ndarray, float]], truth: list[np.ndarray],
          min_iou: float = 0.5) -> tuple[int, int, list[bool]]:
    """(true positives, false positives, which annotations were found): greedy by detection score."""
    found = [False] * len(truth)
    tp = fp = 0
    for box, _ in sorted(detections, key=lambda d: -d[1]):
        overlaps = [-1.0 if found[i] else iou(box, t) for i, t in enumerate(truth)]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best >= 0 and overlaps[best] >= min_iou:
            found[best], tp = True, tp + 1
        else:
            fp += 1
    return tp, fp, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds", default="0.5,0.6,0.7",
                        help="squashed-score thresholds (the demo's config.demo.detector_threshold is 0.5, which "
                             "keeps every HOG detection: OpenCV returns SVM margins > 0, squashed > 0.5)")
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/acar_jax_images"),
                        help="where the packages' wheels are downloaded when not installed")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    truth = read_annotations(ANNOTATIONS)
    detections, sizes = {}, {}
    for name in IMAGES:
        image = load_image(name, Path(args.cache_dir))
        h, w = sizes[name] = image.shape[:2]
        detections[name] = [(box * np.asarray([w, h, w, h]), score)
                            for box, score in detector_hog.detect_people(image)]

    demo_threshold = 0.5
    print(f"OpenCV {__import__('cv2').__version__} HOG people detector, IoU >= 0.5, score >= {demo_threshold} "
          "(the demo's default)")
    print(f"{'image':20} {'size':>9} {'people':>6} {'whole':>5} {'found':>5} {'whole found':>11} {'false +':>7}")
    for name in IMAGES:
        people = [b for b, _ in truth[name]]
        kept = [d for d in detections[name] if d[1] >= demo_threshold]
        tp, fp, found = match(kept, people)
        whole = [v == "whole" for _, v in truth[name]]
        h, w = sizes[name]
        print(f"{name:20} {w:4d}x{h:<4d} {len(people):6d} {sum(whole):5d} {tp:5d} "
              f"{sum(f and wh for f, wh in zip(found, whole, strict=True)):11d} {fp:7d}")

    negatives = [n for n in IMAGES if not truth[n]]
    print(f"\n{'threshold':>9} {'recall':>10} {'recall whole':>12} {'precision':>16} "
          f"{f'false + on the {len(negatives)} images without people':>40}")
    for threshold in thresholds:
        tp = fp = found_whole = people = whole = fp_negative = 0
        for name in IMAGES:
            kept = [d for d in detections[name] if d[1] >= threshold]
            t, f, found = match(kept, [b for b, _ in truth[name]])
            views = [v == "whole" for _, v in truth[name]]
            tp, fp, people, whole = tp + t, fp + f, people + len(views), whole + sum(views)
            found_whole += sum(a and b for a, b in zip(found, views, strict=True))
            fp_negative += f if name in negatives else 0
        precision = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
        print(f"{threshold:9.2f} {f'{tp}/{people}':>10} {f'{found_whole}/{whole}':>12} "
              f"{f'{precision} ({tp}/{tp + fp})':>16} {fp_negative:40d}")


if __name__ == "__main__":
    main()
