"""What a video file holds (size, rate, length), read with PyAV without decoding it all."""
from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["Probe", "probe_video"]


class Probe(NamedTuple):
    """The video stream of a file.

    Attributes:
        ok: the file opens and has a video stream (and, with ``decode_first``, its first
            frame decodes); otherwise ``reason`` says why not and the numbers are 0.
        duration: seconds (stream duration, else container duration).
        fps: average frame rate (29.97 stays 29.97).
        frames: frame count from the container index (estimated as duration x fps when the
            container has none, e.g. webm).
        width, height: coded frame size in pixels.
        codec: FFmpeg codec name ("h264", "vp9", ...).
    """

    ok: bool
    reason: str
    duration: float = 0.0
    fps: float = 0.0
    frames: int = 0
    width: int = 0
    height: int = 0
    codec: str = ""


def _bad(reason: str) -> Probe:
    return Probe(False, " ".join(reason.split()))  # one line, for manifests and logs


def probe_video(path: str | os.PathLike, *, decode_first: bool = False) -> Probe:
    """Read the header of ``path`` (and decode its first frame if ``decode_first``).

    Never raises for a bad file: an unreadable, empty or non-video file gives ``ok=False``
    with the reason.
    """
    import av

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return _bad(f"cannot read the file: {e.strerror or e}")
    if size == 0:
        return _bad("empty file (0 bytes)")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                return _bad("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            frames = stream.frames or round(duration * fps)
            width, height = stream.codec_context.width, stream.codec_context.height
            codec = stream.codec_context.name
            if decode_first:
                stream.codec_context.thread_count = 1
                first = next(container.decode(stream), None)
                if first is None:
                    return _bad("no frame decodes")
                width, height = first.width, first.height
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        return _bad(f"cannot open: {type(e).__name__}: {e}")
    if width <= 0 or height <= 0:
        return _bad(f"frame size {width}x{height}")
    if fps <= 0:
        return _bad("no frame rate in the header")
    return Probe(True, "", duration, fps, int(frames), width, height, codec)
