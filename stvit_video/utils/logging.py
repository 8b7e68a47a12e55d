"""Logging to the console and to ``OUTPUT_DIR/stdout.log``; only rank 0 logs below WARNING."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
_DATE = "%m/%d %H:%M:%S"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is at the time of each record (it
    may be replaced, e.g. by a test harness or a notebook, after logging was set up)."""

    def __init__(self, to_stderr: bool = False) -> None:
        self.to_stderr = to_stderr
        super().__init__(sys.stdout)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr if self.to_stderr else sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it in __init__; the property wins
        pass


def setup_logging(output_dir: str | Path | None = None, rank: int = 0, *, to_stderr: bool = False) -> logging.Logger:
    """Configure the ``stvit_video`` logger once per process.

    Args:
        output_dir: if given, also append to ``output_dir/stdout.log`` (rank 0 only).
        rank: global rank; other ranks only show warnings and errors.
        to_stderr: log to stderr, for tools whose stdout is their result (predict).

    Returns:
        The package logger.
    """
    logger = logging.getLogger("stvit_video")
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT, datefmt=_DATE)
    console = _ConsoleHandler(to_stderr)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if output_dir is not None and rank == 0:
        path = Path(output_dir) / "stdout.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger
