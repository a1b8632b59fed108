"""The reference's frame extraction command, run with the ffmpeg binary that the `imageio-ffmpeg` wheel ships.

The ACAR-Net reference extracts AVA frames with
`ffmpeg -ss 900 -i VIDEO -qscale:v 1 -frames:v 27001 -vf "scale=-1:340,fps=30" image_%06d.jpg`; the zoo's
models saw those JPEGs, and its notes show mAP moving with the ffmpeg version. Running the same command with a
pinned, pip-installed binary gives byte-identical frames on every machine (no system ffmpeg needed), and the
version is written beside the frames (`extraction.json`) so that a frame folder says what made it.
Used by tools/extract_frames.py and by the video demo (acar_jax/inference/demo.py), so that the demo's clips are the
frames evaluation reads.
"""

from __future__ import annotations

import json
import os
import subprocess

FRAME_PATTERN = "image_%06d.jpg"
INFO_FILE = "extraction.json"


class FfmpegError(RuntimeError):
    """ffmpeg failed on a video; the message names the file and carries ffmpeg's own error lines."""


def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg binary (a requirement of the project)."""
    import imageio_ffmpeg  # noqa: PLC0415 (only the extraction paths need it)
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version() -> str:
    """The bundled binary's version string, e.g. 'n9.0.2-17-g2a571b6068-20260930'."""
    import imageio_ffmpeg  # noqa: PLC0415
    return imageio_ffmpeg.get_ffmpeg_version()


def frames_command(video_path: str, out_dir: str, *, start_second: float, num_frames: int, fps: int,
                   height: int) -> list[str]:
    """The reference's command: input seek to `start_second` (omitted at 0), best mjpeg quality, at most
    `num_frames` frames (<= 0: all), scale to `height` keeping the aspect ratio, then `fps` (scale first)."""
    seek = ["-ss", f"{start_second:g}"] if start_second else []
    limit = ["-frames:v", str(num_frames)] if num_frames > 0 else []
    return [ffmpeg_exe(), *seek, "-i", video_path, "-qscale:v", "1", *limit, "-vf", f"scale=-1:{height},fps={fps}",
            os.path.join(out_dir, FRAME_PATTERN), "-loglevel", "error"]


def extract_frames(video_path: str, out_dir: str, *, start_second: float = 0, num_frames: int = 0, fps: int = 30,
                   height: int = 340) -> int:
    """Runs `frames_command` into the existing folder `out_dir`, writes `out_dir/extraction.json` (ffmpeg
    version, command, frame count); returns the number of frames. FfmpegError naming the video on failure."""
    if not os.path.isfile(video_path):
        raise FileNotFoundError(f"video file {video_path} does not exist")
    command = frames_command(video_path, out_dir, start_second=start_second, num_frames=num_frames, fps=fps,
                             height=height)
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    count = sum(1 for n in os.listdir(out_dir) if n.startswith("image_") and n.endswith(".jpg"))
    if proc.returncode != 0 or count == 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no frames written"
        if proc.returncode == 0:
            reason = f"no frames at or after second {start_second:g}"
        raise FfmpegError(f"cannot decode video {video_path}: ffmpeg: {reason}")
    write_info(out_dir, {"backend": "ffmpeg", "ffmpeg_version": ffmpeg_version(),
                         "command": " ".join(command[1:]), "frames": count})
    return count


def write_info(out_dir: str, info: dict) -> None:
    with open(os.path.join(out_dir, INFO_FILE), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
