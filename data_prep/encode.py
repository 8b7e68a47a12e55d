"""Writing h264 mp4 files with PyAV (its bundled FFmpeg has libx264; no ffmpeg binary needed).

A file appears under its final name only when it is complete: :class:`H264Writer` writes to
``<name>.part`` in the same folder and renames it (atomic on POSIX) after the last packet.
A process killed mid-file leaves only the ``.part`` file, which the next run overwrites, so
"the final name exists" means "a finished encode", whatever happened before.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["PART_SUFFIX", "EncoderSettings", "H264Writer", "part_path"]

# Suffix of a file still being written (not ``.mp4``, so no glob for videos picks it up).
PART_SUFFIX = ".part"


class EncoderSettings:
    """libx264 settings.

    Args:
        crf: constant rate factor (x264: 0 lossless .. 51; 23 is FFmpeg's default, visually
            fine for training at 256 px).
        preset: x264 speed/size trade-off ("ultrafast" .. "veryslow").
        gop: keyframe interval in frames (None: x264's default of 250).
        threads: encoder threads (1: parallelism comes from worker processes).

        mbtree: x264's macroblock-tree rate control. Off by default: with it, PyAV 18's
            libx264 gave different bit streams for the same frames in 1 to 7 of 24 repeated
            encodes in our tests (depending on heap contents), so a re-run or a resumed run did not reproduce
            its files. Without it the output is the same bytes for the same input, at a cost
            in bits measured by ``python -m stvit_video.bench.encode --mbtree`` (data_prep/README.md).
    """

    def __init__(self, *, crf: int = 23, preset: str = "veryfast", gop: int | None = None,
                 threads: int = 1, mbtree: bool = False) -> None:
        if not 0 <= crf <= 51:
            raise ValueError(f"crf {crf} outside [0, 51]")
        if gop is not None and gop < 1:
            raise ValueError(f"gop {gop} must be >= 1")
        self.crf, self.preset, self.gop, self.threads, self.mbtree = crf, preset, gop, threads, mbtree

    def options(self) -> dict[str, str]:
        options = {"crf": str(self.crf), "preset": self.preset, "threads": str(self.threads)}
        if not self.mbtree:
            options["x264-params"] = "mbtree=0"  # deterministic output: see the class docstring
        if self.gop is not None:
            # keyint_min = gop too: scene cuts may add keyframes, but never stretch the interval
            options.update({"g": str(self.gop), "keyint_min": str(self.gop)})
        return options

    def __repr__(self) -> str:
        return (f"EncoderSettings(crf={self.crf}, preset={self.preset!r}, gop={self.gop}, threads={self.threads}, "
                f"mbtree={self.mbtree})")


def part_path(path: str | os.PathLike) -> Path:
    """The temporary name of ``path`` while it is written."""
    path = Path(path)
    return path.with_name(path.name + PART_SUFFIX)


class H264Writer:
    """An h264 (yuv420p) mp4 written frame by frame, renamed into place when complete.

    Use as a context manager: leaving the block normally finishes the file and renames it;
    leaving it with an exception removes the partial file. No audio stream is written.

    Args:
        path: the final file name (``.mp4``); its folder is created.
        width, height: frame size in pixels (even: yuv420p halves the chroma planes).
        fps: frame rate (a ``Fraction`` keeps 30000/1001 exact); frame ``i`` gets timestamp
            ``i / fps``.
        settings: encoder settings.
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: Fraction | int | float,
                 settings: EncoderSettings) -> None:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"{path}: h264 yuv420p needs a positive, even width and height, got {width}x{height}")
        self.path = Path(path)
        self.part = part_path(self.path)
        self.width, self.height = width, height
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        if self.fps <= 0:
            raise ValueError(f"{path}: frame rate {fps} must be > 0")
        self.settings = settings
        self.frames_written = 0
        self._container = None
        self._stream = None

    def __enter__(self) -> "H264Writer":
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # mode "w" truncates: a stale .part of a killed run is overwritten, never appended to
        self._container = av.open(str(self.part), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=self.fps)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = self.settings.options()
        self._time_base = 1 / self.fps  # frame i at i / fps
        self._stream.codec_context.time_base = self._time_base
        return self

    def write(self, frame) -> None:
        """Encode one frame: an ``av.VideoFrame`` of the writer's size, or uint8 (H, W, 3) RGB."""
        import av

        if isinstance(frame, np.ndarray):
            if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"{self.path}: expected uint8 ({self.height}, {self.width}, 3) RGB, "
                                 f"got {frame.dtype} {frame.shape}")
            frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = self._time_base
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        container, self._container = self._container, None
        if exc_type is None:
            try:
                if self.frames_written == 0:
                    raise ValueError(f"{self.path}: no frames were written")
                container.mux(self._stream.encode())  # flush the encoder's delayed frames
                container.close()
            except BaseException:
                self._discard(container)
                raise
            os.replace(self.part, self.path)
        else:
            self._discard(container)

    def _discard(self, container) -> None:
        """Close and delete the partial file (the exception that got us here propagates)."""
        try:
            container.close()
        finally:
            self.part.unlink(missing_ok=True)
