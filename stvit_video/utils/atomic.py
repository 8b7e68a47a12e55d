"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Every file the toolkit writes for others to read (checkpoints, lists, ``bad_videos.txt``,
``results.npz``, reports, exported programs) goes through here. The bytes go to a temporary
file in the destination's folder (``<name>.tmp-<pid>-<random>``, so two writers never share
one), are flushed and fsynced, then renamed onto the destination (``os.replace``, atomic on
POSIX and Windows) and the folder is fsynced so the rename survives a power cut. On any error,
``KeyboardInterrupt`` included, the temporary file is removed and the destination is untouched.

    atomic_write_text(out / "train.csv", text)
    with atomic_output(out / "model.pt2") as tmp:   # a path, for writers that want one
        torch.export.save(program, tmp)             # an exception here leaves no model.pt2

Imports nothing of ours (``utils`` is the bottom layer).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

__all__ = ["TMP_MARK", "atomic_output", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]

PathLike = Union[str, "os.PathLike[str]"]
# Every temporary file's name holds this after the destination's name.
TMP_MARK = ".tmp-"


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable (POSIX; folders cannot be opened on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an error, the file
    written there is fsynced and renamed onto ``path``. On an error it is removed and ``path``
    keeps its old content (or stays absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{path.name}{TMP_MARK}{os.getpid()}-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(binary_file)``, atomically; returns ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``\\n`` line ends kept as given); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))
