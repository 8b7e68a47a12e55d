"""Video decoding: one interface, one class per backend (decord, PyAV).

Contract shared by every backend:

- Frame ``i`` is the i-th frame in presentation order, ``0 <= i < num_frames``; the frame
  count and ``fps`` come from the container index (not from decoding), identically for both
  backends, so the same clip sampler gives the same indices whichever backend is used.
- :meth:`VideoDecoder.get_frames` returns uint8 RGB frames as a ``(T, H, W, 3)`` numpy
  array in the order of ``indices``; repeated indices are allowed (short videos are padded
  that way) and each distinct frame is decoded once.
- Every failure (missing, empty, truncated or undecodable file, an error in the middle of the
  stream) raises :class:`~stvit_video.utils.errors.DataError` naming the path and the
  backend, chained from the backend's own exception.

decord rules (each one cost another toolkit a bug report):

- Open a reader inside the DataLoader worker (here: in ``Dataset.__getitem__``); a reader
  created in the parent process deadlocks forked workers.
- ``num_threads=1``: parallelism comes from the workers; decord's default thread pool per
  reader oversubscribes the CPUs.
- Never call ``decord.bridge.set_bridge`` (a process-wide setting that changes what every
  other decord user gets back); frames are converted with ``.asnumpy()``.
- decord raises ``RuntimeError`` when opening and ``decord.DECORDError`` (not a
  RuntimeError) in the middle of a stream: both are caught.
"""
from __future__ import annotations

import abc
import os
from typing import Sequence

import numpy as np

from stvit_video.utils.errors import DataError

__all__ = ["BACKENDS", "DecordDecoder", "PyAVDecoder", "VideoDecoder", "open_video"]


class VideoDecoder(abc.ABC):
    """One open video file. Use as a context manager, or call :meth:`close`.

    Attributes:
        path: the file.
        num_frames: frames in the video stream (from the container index).
        fps: average frame rate of the video stream (29.97 stays 29.97..., not 30).
    """

    backend: str = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.num_frames = 0
        self.fps = 0.0
        _check_file(self.path, self.backend)

    @abc.abstractmethod
    def _read(self, unique_indices: list[int]) -> list[np.ndarray]:
        """Decode the given sorted, distinct indices; return one (H, W, 3) uint8 array each."""

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode the frames at ``indices``.

        Returns:
            uint8 array (T, H, W, 3), RGB, ``T = len(indices)``, in the order of ``indices``.

        Raises:
            IndexError: an index outside ``[0, num_frames)`` (a bug in the caller).
            DataError: the file cannot be decoded at these frames.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            raise IndexError(f"{self.path}: no frame indices requested")
        if indices.min() < 0 or indices.max() >= self.num_frames:
            raise IndexError(
                f"{self.path}: frame indices {indices.min()}..{indices.max()} outside "
                f"[0, {self.num_frames})"
            )
        unique, inverse = np.unique(indices, return_inverse=True)
        frames = self._read(unique.tolist())
        return np.stack(frames)[inverse]

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file; the decoder cannot be used afterwards (idempotent)."""

    def __enter__(self) -> "VideoDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path={self.path!r}, num_frames={self.num_frames}, "
                f"fps={self.fps:.3f})")

    def _error(self, what: str, e: BaseException | None = None) -> DataError:
        reason = f": {type(e).__name__}: {_first_line(e)}" if e is not None else ""
        return DataError(f"decoder {self.backend}: {what} {self.path}{reason}")


class DecordDecoder(VideoDecoder):
    """decord backend (seeks through its own frame index; fastest for sparse frames)."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        decord = _import_decord()
        self._errors = (RuntimeError, decord.DECORDError)
        try:
            self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
        except self._errors as e:
            raise self._error("cannot open", e) from e
        if self.num_frames <= 0:
            raise self._error("no video frames in")

    def _read(self, unique_indices: list[int]) -> list[np.ndarray]:
        try:
            batch = self._reader.get_batch(unique_indices)
        except self._errors as e:
            raise self._error(f"cannot decode frames {unique_indices[0]}..{unique_indices[-1]} of", e) from e
        # a bridge set by other code (e.g. pytorchvideo's decord decoder) returns torch tensors
        return list(batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch))

    def close(self) -> None:
        self._reader = None


class PyAVDecoder(VideoDecoder):
    """PyAV backend.

    On open, the packets of the video stream are demuxed (no decoding) to build the table of
    presentation timestamps; frame ``i`` is the frame with the i-th smallest timestamp, as in
    decord, which also works for variable frame rates. Reading seeks to the keyframe before
    the first wanted frame and decodes forward to the last one.
    """

    backend = "pyav"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import av

        self._av_error = av.FFmpegError
        self._container = None
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
            streams = self._container.streams.video
            stamps = self._demux_timestamps(streams[0]) if streams else []
        except self._av_error as e:
            self.close()
            raise self._error("cannot open", e) from e
        if not streams:
            self.close()
            raise self._error("no video stream in")
        self._pts = sorted(stamps)
        self._index_of_pts = {pts: i for i, pts in enumerate(self._pts)}
        self.num_frames = len(self._pts)
        if self.num_frames == 0:
            self.close()
            raise self._error("no video frames in")
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            self.fps = float(rate)
        else:  # no rate in the header: derive it from the timestamps
            span = (self._pts[-1] - self._pts[0]) * float(self._stream.time_base)
            self.fps = (self.num_frames - 1) / span if span > 0 else 0.0
        if self.fps <= 0:
            self.close()
            raise self._error("no frame rate in")

    def _demux_timestamps(self, stream) -> list[int]:
        self._stream = stream
        stream.codec_context.thread_count = 1  # parallelism comes from the workers
        stamps = []
        for packet in self._container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None and packet.size > 0:
                stamps.append(stamp)
        return stamps

    def _read(self, unique_indices: list[int]) -> list[np.ndarray]:
        wanted = set(unique_indices)
        last = unique_indices[-1]
        found: dict[int, np.ndarray] = {}
        try:
            self._container.seek(self._pts[unique_indices[0]], stream=self._stream, backward=True)
            for frame in self._container.decode(self._stream):
                index = self._index_of_pts.get(frame.pts)
                if index in wanted:
                    found[index] = frame.to_ndarray(format="rgb24")
                if index is not None and index >= last:
                    break
        except self._av_error as e:
            raise self._error(f"cannot decode frames {unique_indices[0]}..{last} of", e) from e
        missing = sorted(wanted - found.keys())
        if missing:
            raise self._error(f"the stream ended before frames {missing[:5]} of")
        return [found[i] for i in unique_indices]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


BACKENDS: dict[str, type[VideoDecoder]] = {"decord": DecordDecoder, "pyav": PyAVDecoder}


def open_video(path: str | os.PathLike, backend: str = "decord") -> VideoDecoder:
    """Open ``path`` with ``backend`` ("decord" or "pyav", see ``DATA.DECODING_BACKEND``).

    Raises:
        ValueError: unknown backend.
        DataError: the file is missing, empty or cannot be opened.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return BACKENDS[backend](path)


def _check_file(path: str, backend: str) -> None:
    # Checked up front so the two commonest failures get a plain message, not a codec error.
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"decoder {backend}: video file {path} does not exist or cannot be read") from e
    if size == 0:
        raise DataError(f"decoder {backend}: video file {path} is empty (0 bytes)")


def _import_decord():
    try:
        import decord
    except ImportError as e:
        raise ImportError(
            "DATA.DECODING_BACKEND = 'decord' needs decord: pip install decord "
            "(or set DATA.DECODING_BACKEND pyav)"
        ) from e
    return decord


def _first_line(e: BaseException) -> str:
    # decord puts a C++ stack trace after the first line; keep logs readable.
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""
