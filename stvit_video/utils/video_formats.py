"""Video file names and decoders that the loader, ``predict`` and ``data_prep`` all accept.

One copy of each list, so a format or decoder added here reaches every command line. Imports
nothing of ours and no third-party package: ``data_prep`` reads it in worker processes that
must not pay for torch (about 3 s each).
"""
from __future__ import annotations

import os

__all__ = ["DECODER_BACKENDS", "VIDEO_EXTENSIONS", "is_video_name"]

# File suffixes taken as videos (lower case); anything else (.txt, .json, .DS_Store) is ignored.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpeg", ".mpg")
# Values of DATA.DECODING_BACKEND and of every --backend option; the first is the default.
DECODER_BACKENDS: tuple[str, ...] = ("decord", "pyav")


def is_video_name(name: str | os.PathLike) -> bool:
    """Whether a file name (or path) has one of :data:`VIDEO_EXTENSIONS`, in any case."""
    return os.path.splitext(os.fspath(name))[1].lower() in VIDEO_EXTENSIONS
