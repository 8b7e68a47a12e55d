"""Video decoding: one interface, one class per backend (decord, PyAV).

Contract shared by every backend:

- Frame ``i`` is the i-th frame in presentation order, ``0 <= i < num_frames``; the frame
  count and ``fps`` come from the container index (not from decoding), identically for both
  backends, so the same clip sampler gives the same indices whichever backend is used.
- :meth:`VideoDecoder.get_frames` returns uint8 RGB frames as a ``(T, H, W, 3)`` numpy
  array in the order of ``indices``; repeated indices are allowed (short videos are padded
  that way) and each distinct frame is decoded once.
- Every failure raises :class:`~stvit_video.utils.errors.DataError` naming the path and the
  backend, chained from the backend's own exception. A file that can never be decoded
  (missing, empty, not a video, truncated before its index, no video stream or frames)
  raises the subclass :class:`VideoOpenError` when it is opened: retrying it is pointless.
  An error in the middle of the stream is a plain ``DataError``: another clip may decode.

Native messages: decord's and PyAV's FFmpeg, and decord's own C++ logger, write to the
process's stderr (file descriptor 2), not to Python logging. :func:`quiet_native_logging`,
called in each DataLoader worker (``worker_init_fn``), silences them there: FFmpeg through
each library's log level (``decord.logging.set_level``, ``av.logging.set_level``), and
decord's "ERROR opening" line, which no level controls (dmlc ``LOG(WARNING)``), by pointing
fd 2 at a temporary file while decord opens a file: dropped when the open fails (the reason
is in the exception), written back to stderr when it succeeds. The project's own warning per
bad video is unaffected (see :mod:`stvit_video.datasets.loader`).

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
import contextlib
import os
import sys
import tempfile
from typing import Iterator, Sequence

import numpy as np

from stvit_video.utils.errors import DataError
from stvit_video.utils.video_formats import DECODER_BACKENDS

__all__ = ["BACKENDS", "DecordDecoder", "PyAVDecoder", "VideoDecoder", "VideoOpenError", "open_video",
           "quiet_native_logging"]

# Set by quiet_native_logging(): swallow decord's stderr line when an open fails.
_capture_open_stderr = False


class VideoOpenError(DataError):
    """The file can never be decoded (missing, empty, not a video, no video stream or frames).

    Raised when opening; a permanent failure: the dataset never retries it.
    """


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
    def _read(self, unique_indices: list[int]) -> np.ndarray:
        """Decode the given sorted, distinct indices into one uint8 (len(indices), H, W, 3) array."""

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
        if unique.size == indices.size and (unique == indices).all():
            return frames  # distinct and increasing (the usual clip): no reordering copy
        return frames[inverse]

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

    def _error(self, what: str, e: BaseException | None = None, cls: type[DataError] = DataError) -> DataError:
        reason = f": {type(e).__name__}: {_first_line(e)}" if e is not None else ""
        return cls(f"decoder {self.backend}: {what} {self.path}{reason}")


class DecordDecoder(VideoDecoder):
    """decord backend (seeks through its own frame index; fastest for sparse frames)."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        decord = _import_decord()
        self._errors = (RuntimeError, decord.DECORDError)
        try:
            with _stderr_dropped_on_error(_capture_open_stderr):
                self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
        except self._errors as e:
            raise self._error("cannot open", e, VideoOpenError) from e
        if self.num_frames <= 0:
            raise self._error("no video frames in", cls=VideoOpenError)

    def _read(self, unique_indices: list[int]) -> np.ndarray:
        try:
            batch = self._reader.get_batch(unique_indices)
        except self._errors as e:
            raise self._error(f"cannot decode frames {unique_indices[0]}..{unique_indices[-1]} of", e) from e
        # a bridge set by other code (e.g. pytorchvideo's decord decoder) returns torch tensors
        return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)

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
            raise self._error("cannot open", e, VideoOpenError) from e
        if not streams:
            self.close()
            raise self._error("no video stream in", cls=VideoOpenError)
        self._pts = sorted(stamps)
        self._index_of_pts = {pts: i for i, pts in enumerate(self._pts)}
        self.num_frames = len(self._pts)
        if self.num_frames == 0:
            self.close()
            raise self._error("no video frames in", cls=VideoOpenError)
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            self.fps = float(rate)
        else:  # no rate in the header: derive it from the timestamps
            span = (self._pts[-1] - self._pts[0]) * float(self._stream.time_base)
            self.fps = (self.num_frames - 1) / span if span > 0 else 0.0
        if self.fps <= 0:
            self.close()
            raise self._error("no frame rate in", cls=VideoOpenError)

    def _demux_timestamps(self, stream) -> list[int]:
        self._stream = stream
        stream.codec_context.thread_count = 1  # parallelism comes from the workers
        stamps = []
        for packet in self._container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None and packet.size > 0:
                stamps.append(stamp)
        return stamps

    def _read(self, unique_indices: list[int]) -> np.ndarray:
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
        return np.stack([found[i] for i in unique_indices])

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


# The backend names: the shared tuple that every --backend option offers (re-exported).
BACKENDS = DECODER_BACKENDS
# Their classes, one per name (tests/utils/test_video_formats.py checks the keys match BACKENDS).
_DECODERS: dict[str, type[VideoDecoder]] = {"decord": DecordDecoder, "pyav": PyAVDecoder}


def open_video(path: str | os.PathLike, backend: str = "decord") -> VideoDecoder:
    """Open ``path`` with ``backend`` ("decord" or "pyav", see ``DATA.DECODING_BACKEND``).

    Raises:
        ValueError: unknown backend.
        VideoOpenError: the file is missing, empty or cannot be opened (permanent).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return _DECODERS[backend](path)


def _check_file(path: str, backend: str) -> None:
    # Checked up front so the two commonest failures get a plain message, not a codec error.
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise VideoOpenError(f"decoder {backend}: video file {path} does not exist or cannot be read") from e
    if size == 0:
        raise VideoOpenError(f"decoder {backend}: video file {path} is empty (0 bytes)")


def quiet_native_logging(backend: str) -> None:
    """Silence the native stderr messages of ``backend``'s library in this process.

    Meant for DataLoader workers (``worker_init_fn``): it changes process-wide settings, so
    the loader does not call it in the main process (``num_workers = 0``), where the caller's
    own decord / PyAV settings stay as they are.

    - decord: its FFmpeg logs only fatal messages (``decord.logging.set_level``), and its
      C++ "ERROR opening" line is dropped when an open fails (see the module docstring).
    - pyav: ``av.logging.set_level(None)``, PyAV's documented quiet setting (FFmpeg logs
      ignored; also its default, restated in case other code raised it).
    """
    global _capture_open_stderr
    if backend == "decord":
        decord = _import_decord()
        decord.logging.set_level(decord.logging.FATAL)  # only messages about to abort the process
        _capture_open_stderr = True
    elif backend == "pyav":
        import av.logging

        av.logging.set_level(None)
    else:
        raise ValueError(f"unknown decoding backend {backend!r}; use one of {', '.join(BACKENDS)}")


@contextlib.contextmanager
def _stderr_dropped_on_error(enabled: bool) -> Iterator[None]:
    """Point fd 2 at a temporary file for the block; replay its text unless the block raises.

    For native code only (C++ ``std::cerr`` is unbuffered and writes to fd 2 directly); Python's
    ``sys.stderr`` is flushed first so nothing of ours lands in the file.
    """
    if not enabled:
        yield
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        # reached only when the block succeeded: keep whatever it printed
        sink.seek(0)
        text = sink.read()
        if text:
            os.write(2, text)


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
