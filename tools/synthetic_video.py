"""Writes one video of the synthetic dataset as an mp4 plus its person boxes, to try the video demo on.

  python tools/synthetic_video.py --root synthetic_data --video_id synth_val_000 --output demo_input/
  -> demo_input/synth_val_000.mp4 (30 fps, the frames as generated) and demo_input/synth_val_000_boxes.csv (the val
     proposals of that video in the AVA proposal format, timestamps in seconds of the mp4: frame 1 is second 0)

The synthetic set's frame 1 is second START_SECOND (900, as AVA's); the demo counts seconds from the video's
start, so the CSV's timestamps are shifted by -START_SECOND. A person detector finds no people among coloured
rectangles, hence the proposals.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages are importable
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402

from data_pipelines import frame_index, synthetic  # noqa: E402


def write_mp4(frames_dir: str, path: str, fps: int) -> int:
    """Encodes a frame folder (image_%06d.jpg) as H.264 (near lossless, crf 10); returns the frame count."""
    n = frame_index.count_frames(frames_dir)
    with av.open(path, "w") as container:
        first = frame_index.read_frame(os.path.join(frames_dir, frame_index.FRAME_PATTERN.format(1)))
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for i in range(1, n + 1):
            image = frame_index.read_frame(os.path.join(frames_dir, frame_index.FRAME_PATTERN.format(i)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return n


def shifted_rows(csv_path: str, video_id: str, shift: int) -> list[str]:
    """The rows of `video_id` with timestamp - shift."""
    rows = []
    with open(csv_path) as f:
        for line in f:
            fields = line.strip().split(",")
            if fields[0] == video_id:
                fields[1] = str(int(fields[1]) - shift)
                rows.append(",".join(fields))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="synthetic_data", help="synthetic dataset root (run.py makes it)")
    parser.add_argument("--video_id", default="", help="a val video id (default: the first)")
    parser.add_argument("--proposals", default="ava_val_predicted_boxes.csv", help="boxes file under --root")
    parser.add_argument("--output", required=True, help="folder to write <video_id>.mp4 and <video_id>_boxes.csv")
    args = parser.parse_args(argv)
    frames_root = os.path.join(args.root, "frames")
    if not os.path.isdir(frames_root):
        sys.exit(f"--root {args.root}: no frames/ folder (python run.py generates the synthetic dataset)")
    video_id = args.video_id or sorted(v for v in os.listdir(frames_root) if "val" in v)[0]
    if not os.path.isdir(os.path.join(frames_root, video_id)):
        sys.exit(f"--video_id {video_id}: no frame folder {os.path.join(frames_root, video_id)}")
    rows = shifted_rows(os.path.join(args.root, args.proposals), video_id, synthetic.START_SECOND)
    if not rows:
        sys.exit(f"--proposals {os.path.join(args.root, args.proposals)}: no rows for {video_id}")
    os.makedirs(args.output, exist_ok=True)
    n = write_mp4(os.path.join(frames_root, video_id), os.path.join(args.output, f"{video_id}.mp4"), synthetic.FPS)
    with open(os.path.join(args.output, f"{video_id}_boxes.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"wrote {os.path.join(args.output, video_id)}.mp4 ({n} frames) and {video_id}_boxes.csv ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
