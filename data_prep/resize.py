"""``resize``: raw clips -> h264 yuv420p mp4 at a fixed short side, with PyAV only.

Per video: decode (cutting [time_start, time_end) out of untrimmed files), scale so the short
side is ``short_side`` (even width and height), optionally resample to a constant ``fps``,
encode with libx264 and a short keyframe interval, drop audio. Output:
``OUT/videos/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4``.

Resumable and idempotent: a clip whose output exists and probes as a finished h264 file of
the expected size is skipped; outputs appear only when complete (``<name>.part``, then a
rename; see :mod:`data_prep.encode`), and a stale ``.part`` of a killed run is overwritten
or removed. ``--shard I/N`` takes the clips whose output path hashes to ``I`` (md5, mod N),
so N independent jobs (a Slurm or Kubernetes job array) cover every clip exactly once with no
coordinator, whatever order or machine they run on.
"""
from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from data_prep.encode import EncoderSettings, H264Writer, part_path
from data_prep.manifest import ManifestRow, output_relpath
from data_prep.parallel import run_parallel
from data_prep.probe import probe_video
from stvit_video.utils.atomic import atomic_write_text
from stvit_video.utils.encoding_info import ENCODING_INFO
from stvit_video.utils.errors import DataError

__all__ = ["DEFAULT_GOP", "DEFAULT_SHORT_SIDE", "ResizeOptions", "ResizeReport", "ResizeResult",
           "failure_log_path", "is_finished", "output_size", "parse_shard", "resize_all", "resize_row",
           "resize_video", "shard_of"]

# Video Swin's authors trained on Kinetics resized to short side 256.
DEFAULT_SHORT_SIDE = 256
# Keyframe every 32 frames (~1 s at 30 fps). A decoder seeking to a clip start decodes from
# the keyframe before it: at most 31 wasted frames instead of up to 249 with x264's default
# of 250. Measured on 340x256 10-s clips: a random 32 x 2 clip decodes in 28 ms (decord) vs
# 49 ms with 250, for 17% more disk; 16 was no faster with decord and 19% larger (README.md).
DEFAULT_GOP = 32
DEFAULT_CRF = 23
DEFAULT_PRESET = "veryfast"
# Frames within this many seconds of a trim boundary count as inside (timestamp rounding).
_TIME_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ResizeOptions:
    """How clips are re-encoded (the ``resize`` command line)."""

    short_side: int = DEFAULT_SHORT_SIDE
    fps: float | None = None  # None: keep the source rate (every frame kept)
    gop: int = DEFAULT_GOP
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    mbtree: bool = False  # see EncoderSettings: off keeps re-runs byte-identical

    def __post_init__(self) -> None:
        if self.short_side < 16 or self.short_side % 2:
            raise ValueError(f"--short-side {self.short_side}: use an even number >= 16")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"--fps {self.fps}: must be > 0")
        EncoderSettings(crf=self.crf, preset=self.preset, gop=self.gop)  # validates crf and gop

    def encoder(self) -> EncoderSettings:
        return EncoderSettings(crf=self.crf, preset=self.preset, gop=self.gop, mbtree=self.mbtree)


class ResizeResult(NamedTuple):
    """The outcome for one manifest row.

    ``status``: "encoded" (written now), "skipped" (a finished output was there), "failed"
    (``reason`` says why; no output), "missing" (no raw file).
    """

    output: str  # relative to OUT
    status: str
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    bytes: int = 0


class ResizeReport(NamedTuple):
    """All results of one ``resize`` run (one shard)."""

    results: list[ResizeResult]
    shard: tuple[int, int]
    seconds: float

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side = ``short_side`` and the long side scaled and rounded to even."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size {width}x{height}")
    if width <= height:
        return short_side, max(2, round(height * short_side / width / 2) * 2)
    return max(2, round(width * short_side / height / 2) * 2), short_side


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as e:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/8 (I from 0 to N-1)") from e
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
    return index, count


def shard_of(key: str, num_shards: int) -> int:
    """Shard of ``key`` (an output path): md5, so the same on every machine and Python version."""
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:8], "big") % num_shards


def is_finished(path: str | os.PathLike, width: int, height: int) -> bool:
    """``path`` is a finished output: an h264 file of this size with frames in it."""
    if not os.path.isfile(path):
        return False
    probe = probe_video(path)
    return probe.ok and probe.codec == "h264" and (probe.width, probe.height) == (width, height) and probe.frames > 0


def _decoded(container, stream, trim: tuple[float, float] | None) -> Iterator[tuple[float, object]]:
    """(seconds, av.VideoFrame) in presentation order, inside ``trim`` when given."""
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
    if trim is not None and trim[0] > 0:
        container.seek(int(trim[0] / stream.time_base), stream=stream, backward=True)
    for index, frame in enumerate(container.decode(stream)):
        seconds = frame.time if frame.time is not None else index / rate
        if trim is not None:
            if seconds < trim[0] - _TIME_TOLERANCE:
                continue
            if seconds >= trim[1] - _TIME_TOLERANCE:
                break
        yield seconds, frame


def resize_video(src: str | os.PathLike, dst: str | os.PathLike, *, size: tuple[int, int],
                 options: ResizeOptions, trim: tuple[float, float] | None = None) -> int:
    """Re-encode ``src`` to ``dst`` at ``size`` = (width, height); return the frames written.

    Args:
        trim: (start, end) seconds to keep, for untrimmed sources; None keeps every frame.

    Raises:
        av.FFmpegError, OSError, ValueError: the source cannot be decoded (nothing is left
            at ``dst``; a partial ``.part`` file is removed).
    """
    import av

    width, height = size
    with av.open(os.fspath(src), metadata_errors="ignore") as container:
        if not container.streams.video:
            raise ValueError(f"{src}: no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # parallelism comes from the worker processes
        source_rate = stream.average_rate or stream.guessed_rate
        if options.fps is None and not source_rate:
            raise ValueError(f"{src}: no frame rate in the header; pass --fps")
        rate = Fraction(options.fps).limit_denominator(1001) if options.fps else Fraction(source_rate)
        frame_seconds = 1 / float(source_rate) if source_rate else 1 / float(rate)
        end = trim[1] if trim is not None else None
        with H264Writer(dst, width=width, height=height, fps=rate, settings=options.encoder()) as writer:
            scale = functools.partial(_scaled, width=width, height=height)
            if options.fps is None:
                for _, frame in _decoded(container, stream, trim):
                    writer.write(scale(frame))
            else:
                _write_resampled(writer, _decoded(container, stream, trim), float(rate), frame_seconds, end, scale)
            if writer.frames_written == 0:
                where = f" in [{trim[0]}, {trim[1]}) s" if trim else ""
                raise ValueError(f"{src}: no frames{where}")
            return writer.frames_written


def _scaled(frame, *, width: int, height: int):
    return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")


def _write_resampled(writer: H264Writer, frames: Iterator[tuple[float, object]], fps: float,
                     frame_seconds: float, end: float | None, scale) -> None:
    """Constant ``fps`` output: output frame k (time k / fps after the first frame) shows the
    last source frame at or before that time (frames are dropped or repeated)."""
    first = previous = None
    k = 0
    last_seconds = 0.0
    for seconds, frame in frames:
        if first is None:
            first = seconds
        relative = seconds - first
        while previous is not None and k / fps < relative - _TIME_TOLERANCE:
            writer.write(previous)
            k += 1
        previous, last_seconds = scale(frame), relative
    if previous is None:
        return
    # the last source frame lasts one source frame (or up to the trim end)
    stop = last_seconds + frame_seconds if end is None else min(end - first, last_seconds + frame_seconds)
    while k / fps < stop - _TIME_TOLERANCE or k == 0:
        writer.write(previous)
        k += 1


def resize_row(row: ManifestRow, *, out_dir: str | os.PathLike, options: ResizeOptions) -> ResizeResult:
    """Resize the raw file of one manifest row (skip it if already done); never raises for a bad file."""
    relpath = output_relpath(row)
    if row.status == "missing":
        return ResizeResult(relpath, "missing", row.reason)
    if row.status != "ok":
        return ResizeResult(relpath, "failed", f"raw file {row.path}: {row.reason}")
    dst = Path(out_dir) / relpath
    size = output_size(row.width, row.height, options.short_side)
    if is_finished(dst, *size):
        part_path(dst).unlink(missing_ok=True)  # a stale temp file of an earlier run
        return ResizeResult(relpath, "skipped", bytes=dst.stat().st_size)
    import av

    trim = (row.time_start, row.time_end) if row.trim else None
    start = time.perf_counter()
    try:
        frames = resize_video(row.path, dst, size=size, options=options, trim=trim)
    except (av.FFmpegError, OSError, ValueError, EOFError, DataError) as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        return ResizeResult(relpath, "failed", f"raw file {row.path}: {reason}")
    return ResizeResult(relpath, "encoded", "", frames, time.perf_counter() - start, dst.stat().st_size)


def _crashed(row: ManifestRow) -> ResizeResult:
    return ResizeResult(output_relpath(row), "failed", f"raw file {row.path}: the worker process crashed on it (FFmpeg)")


def failure_log_path(out_dir: str | os.PathLike, shard: tuple[int, int]) -> Path:
    """``OUT/resize_failed.txt``, or ``OUT/resize_failed.shard-I-of-N.txt`` per shard (no two jobs share a file)."""
    index, count = shard
    name = "resize_failed.txt" if count == 1 else f"resize_failed.shard-{index}-of-{count}.txt"
    return Path(out_dir) / name


def resize_all(rows: Sequence[ManifestRow], out_dir: str | os.PathLike, options: ResizeOptions, *,
               workers: int = 1, shard: tuple[int, int] = (0, 1), progress: bool = True) -> ResizeReport:
    """Resize the rows of shard ``shard`` = (I, N); write the failures to :func:`failure_log_path`.

    One bad video never stops the run: it becomes a "failed" result with its reason.
    """
    index, count = shard
    mine = [row for row in rows if shard_of(output_relpath(row), count) == index]
    start = time.perf_counter()
    work = functools.partial(resize_row, out_dir=os.fspath(out_dir), options=options)
    desc = "resize" if count == 1 else f"resize {index}/{count}"
    results = list(run_parallel(work, mine, workers=workers, desc=desc, progress=progress, on_crash=_crashed))
    report = ResizeReport(results, shard, time.perf_counter() - start)
    atomic_write_text(failure_log_path(out_dir, shard),
                      "".join(f"{r.output}\t{r.reason}\n" for r in results if r.status == "failed"))
    return report


def write_encoding_info(out_dir: str | os.PathLike, options: "ResizeOptions") -> Path:
    """Record how the videos in ``out_dir`` were encoded (``OUT/encoding.json``): the evaluation
    report quotes the short side, because accuracy depends on it (Video Swin: 256)."""
    import json

    path = Path(out_dir) / ENCODING_INFO
    info = {"short_side": options.short_side, "fps": options.fps, "gop": options.gop, "crf": options.crf,
            "preset": options.preset, "mbtree": options.mbtree, "codec": "h264"}
    return atomic_write_text(path, json.dumps(info, indent=1) + "\n")
