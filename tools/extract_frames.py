"""Decodes AVA / Kinetics videos into the frame folders the data pipeline reads: `<frame_dir>/<video_id>/
image_%06d.jpg`.

Default (`--backend=ffmpeg`): runs the reference's own command,
`ffmpeg -ss 900 -i VIDEO -qscale:v 1 -frames:v 27001 -vf "scale=-1:340,fps=30" image_%06d.jpg`, with the ffmpeg
binary of the `imageio-ffmpeg` wheel (no system ffmpeg needed; data_pipelines/frame_extraction.py), and records
the ffmpeg version in `<video_id>/extraction.json`. The JPEGs are byte-identical to that command's with the
same binary.

Fallback (`--backend=pyav`): a re-implementation with PyAV + PIL, for machines where the bundled binary does not
run. Same frames chosen and same size, but different pixels (swscale's RGB conversion and PIL's JPEG encoder
instead of ffmpeg's YUV scaling and mjpeg; the README gives the measured difference):
  * seek to `start_second` (relative to the file's start time, as ffmpeg's -ss), frames before it dropped;
  * 30 fps by timestamps, as ffmpeg's fps filter: output slot n holds the last input frame whose time, rounded
    to the nearest slot, is <= n; numbering starts at the first frame's slot (frame 1); at the end the last
    frame lasts its duration (eof_action=round);
  * scaled to height 340 with the width keeping the aspect ratio (`scale=-1:340`: round(w * 340 / h)), bicubic
    (ffmpeg's default scaler, here through PyAV's libswscale);
  * at most `ceil((1800 - 900) * 30 + 1e-8)` = 27001 frames (the reference's count), JPEG at top quality.
With --kinetics a clip is extracted whole (from second 0, every frame at 30 fps).

Parallel over videos, resumable: a video is written into `<frame_dir>/.<video_id>.partial` and renamed when
complete, so finished videos are skipped and a half-written one is redone. Videos that fail to decode are
listed at the end (and in `<frame_dir>/extract_failures.txt`); the exit status is 1 if any failed.

  python tools/extract_frames.py --video_dir videos/ --frame_dir frames/ [--workers 8]
  python tools/extract_frames.py --video_dir kinetics_clips/ --frame_dir frames/ --kinetics
"""

from __future__ import annotations

import argparse
import dataclasses
import fractions
import math
import multiprocessing
import os
import pathlib
import shutil
import sys

import av
from tqdm import tqdm

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages are importable
    sys.path.insert(0, str(ROOT))

from data_pipelines import frame_extraction  # noqa: E402

FRAME_PATTERN = "image_{:06d}.jpg"
AVA_START_SECOND = 900
AVA_NUM_FRAMES = math.ceil((1800 - 900) * 30 + 1e-8)   # 27001, as the reference's ffmpeg -frames:v
FAILURES_FILE = "extract_failures.txt"


@dataclasses.dataclass(frozen=True)
class Options:
    start_second: float = AVA_START_SECOND
    num_frames: int = AVA_NUM_FRAMES     # <= 0: every frame to the end
    fps: int = 30
    height: int = 340
    quality: int = 100                   # pyav backend: PIL JPEG quality (ffmpeg -qscale:v 1 is mjpeg's top)
    backend: str = "ffmpeg"              # "ffmpeg" (the reference's command) | "pyav" (fallback)


def video_id_of(filename: str) -> str:
    """`<video_id>.<ext>` -> video_id (as the reference: the name up to the last dot)."""
    return filename.rsplit(".", 1)[0]


def scaled_width(width: int, height: int, out_height: int) -> int:
    """ffmpeg `scale=-1:H`: av_rescale(H, w, h), i.e. round-half-up of w * H / h."""
    return max(1, (out_height * width + height // 2) // height)


def _slot(seconds: fractions.Fraction, fps: int) -> int:
    """Nearest output slot of a time (ties away from zero, as av_rescale_q_rnd NEAR_INF)."""
    x = seconds * fps
    return math.floor(x + fractions.Fraction(1, 2)) if x >= 0 else -math.floor(-x + fractions.Fraction(1, 2))


def _resampled_frames(container: av.container.InputContainer, options: Options):
    """Yields decoded frames at `options.fps` from `start_second` on, by timestamps (ffmpeg fps filter)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    file_start = fractions.Fraction(container.start_time or 0, av.time_base)   # ffmpeg -ss is relative to it
    origin = file_start + fractions.Fraction(options.start_second)
    if options.start_second > 0:
        container.seek(int(origin * av.time_base), backward=True, any_frame=False)
    prev, next_slot, fallback_pts = None, None, 0
    for frame in container.decode(stream):
        if frame.pts is None:                          # no timestamps: assume the stream's nominal rate
            t = origin + fractions.Fraction(fallback_pts, 1) / (stream.average_rate or options.fps)
            fallback_pts += 1
        else:
            t = frame.pts * frame.time_base
        rel = t - origin
        if rel < 0:
            continue
        s = _slot(rel, options.fps)
        if prev is None:
            next_slot = s
        while next_slot < s:
            yield prev
            next_slot += 1
        prev, prev_rel = frame, rel
    if prev is None:
        return
    # EOF (fps filter, eof_action=round): the last frame lasts its duration, at least one slot
    duration = getattr(prev, "duration", None)
    if duration and prev.time_base is not None:
        duration = duration * prev.time_base
    else:
        duration = 1 / fractions.Fraction(stream.average_rate or options.fps)
    end_slot = _slot(prev_rel + duration, options.fps)
    yield prev
    next_slot += 1
    while next_slot < end_slot:
        yield prev
        next_slot += 1


def extract_video(video_path: str, frame_dir: str, options: Options) -> tuple[str, str, int]:
    """Extracts one video; returns (video_id, status, frames) with status "done", "skipped" or an error."""
    video_id = video_id_of(os.path.basename(video_path))
    final = os.path.join(frame_dir, video_id)
    if os.path.isdir(final):
        return video_id, "skipped", 0
    partial = os.path.join(frame_dir, f".{video_id}.partial")
    shutil.rmtree(partial, ignore_errors=True)     # a half-written run is redone from scratch
    os.makedirs(partial)
    try:
        if options.backend == "ffmpeg":
            count = frame_extraction.extract_frames(video_path, partial, start_second=options.start_second,
                                                    num_frames=options.num_frames, fps=options.fps,
                                                    height=options.height)
        else:
            count = _extract_pyav(video_path, partial, options)
    except Exception as e:  # noqa: BLE001 (any decoder failure is reported per video, the others go on)
        shutil.rmtree(partial, ignore_errors=True)
        return video_id, f"{type(e).__name__}: {e}".replace("\n", " "), 0
    os.rename(partial, final)
    return video_id, "done", count


def _extract_pyav(video_path: str, partial: str, options: Options) -> int:
    """The PyAV + PIL fallback; returns the frame count."""
    count, last_frame, last_image = 0, None, None
    with av.open(video_path) as container:
        for frame in _resampled_frames(container, options):
            if 0 < options.num_frames <= count:
                break
            if frame is not last_frame:            # a duplicated slot reuses the scaled image
                width = scaled_width(frame.width, frame.height, options.height)
                last_image = frame.reformat(width=width, height=options.height, format="rgb24",
                                            interpolation="BICUBIC").to_image()
                last_frame = frame
            count += 1
            last_image.save(os.path.join(partial, FRAME_PATTERN.format(count)), quality=options.quality)
    if count == 0:
        raise RuntimeError(f"no frames at or after second {options.start_second}")
    frame_extraction.write_info(partial, {"backend": "pyav", "pyav_version": av.__version__, "frames": count})
    return count


def _extract_star(args: tuple[str, str, Options]) -> tuple[str, str, int]:
    return extract_video(*args)


def list_videos(video_dir: str) -> list[str]:
    """Every regular file of `video_dir` (as the reference), hidden files excepted, sorted."""
    return sorted(os.path.join(video_dir, n) for n in os.listdir(video_dir)
                  if not n.startswith(".") and os.path.isfile(os.path.join(video_dir, n)))


def run(video_dir: str, frame_dir: str, options: Options, workers: int = 1) -> dict[str, str]:
    """Extracts every video of `video_dir`; returns {video_id: error} for the videos that failed."""
    if not os.path.isdir(video_dir):
        raise FileNotFoundError(f"--video_dir {video_dir} does not exist")
    os.makedirs(frame_dir, exist_ok=True)
    jobs = [(path, frame_dir, options) for path in list_videos(video_dir)]
    failures: dict[str, str] = {}
    done = skipped = 0
    with tqdm(total=len(jobs), unit="video", desc="extract frames") as bar:
        if workers > 1:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            results = pool.imap_unordered(_extract_star, jobs)
        else:
            pool, results = None, map(_extract_star, jobs)
        try:
            for video_id, status, _ in results:
                if status == "done":
                    done += 1
                elif status == "skipped":
                    skipped += 1
                else:
                    failures[video_id] = status
                bar.update()
                bar.set_postfix(done=done, skipped=skipped, failed=len(failures))
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    report = os.path.join(frame_dir, FAILURES_FILE)
    if failures:
        with open(report, "w") as f:
            f.writelines(f"{v}\t{e}\n" for v, e in sorted(failures.items()))
    elif os.path.exists(report):
        os.remove(report)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video_dir", required=True, help="input folder of videos (<video_id>.<ext>)")
    parser.add_argument("--frame_dir", required=True, help="output: <frame_dir>/<video_id>/image_%%06d.jpg")
    parser.add_argument("--kinetics", action="store_true", help="Kinetics clips: whole clip from second 0")
    parser.add_argument("--start_second", type=float, default=None, help="first second (AVA: 900)")
    parser.add_argument("--num_frames", type=int, default=None, help="frames per video (AVA 27001; <= 0 all)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--height", type=int, default=340)
    parser.add_argument("--backend", choices=("ffmpeg", "pyav"), default="ffmpeg",
                        help="ffmpeg: the reference's command with imageio-ffmpeg's binary; pyav: PyAV + PIL fallback")
    parser.add_argument("--workers", "--num_processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    start = args.start_second if args.start_second is not None else (0 if args.kinetics else AVA_START_SECOND)
    num = args.num_frames if args.num_frames is not None else (0 if args.kinetics else AVA_NUM_FRAMES)
    options = Options(start_second=start, num_frames=num, fps=args.fps, height=args.height, backend=args.backend)
    failures = run(args.video_dir, args.frame_dir, options, args.workers)
    if failures:
        print(f"{len(failures)} video(s) failed to decode (listed in "
              f"{os.path.join(args.frame_dir, FAILURES_FILE)}):", file=sys.stderr)
        for video_id, error in sorted(failures.items()):
            print(f"  [ERROR] {video_id}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
