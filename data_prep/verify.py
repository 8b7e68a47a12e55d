"""``verify``: decode the first, the last and one random frame of every output with the
training decoder (:func:`stvit_video.datasets.decoder.open_video`), and list the bad ones.

``OUT/bad_videos.txt``: one ``relative/path.mp4<TAB>reason`` line per bad video (paths
relative to OUT, as in the lists). The random frame of a video depends only on ``seed`` and
its path, so a re-run checks the same frames whatever the order or the number of workers.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from data_prep.manifest import ManifestRow, output_relpath
from data_prep.parallel import run_parallel
from stvit_video.utils.atomic import atomic_write_text
from stvit_video.utils.errors import DataError

__all__ = ["BAD_LIST", "VerifyReport", "read_bad_list", "verify_outputs", "verify_video", "write_bad_list"]

BAD_LIST = "bad_videos.txt"


class VerifyReport(NamedTuple):
    """Outputs decoded, and the bad ones as {relative path: reason}."""

    checked: int
    bad: dict[str, str]


def _frame_seed(seed: int, relpath: str) -> list[int]:
    return [seed, int.from_bytes(hashlib.md5(relpath.encode("utf-8")).digest()[:8], "big")]


def verify_video(path: str | os.PathLike, *, backend: str, seed: int, key: str = "") -> str:
    """Decode frames 0, N-1 and a random one of ``path`` (seeded by ``seed`` and ``key``).

    Returns:
        "" when they decode, else the reason (one line).
    """
    # imported here: stvit_video.datasets loads torch, which only the verify workers need
    from stvit_video.datasets.decoder import open_video

    try:
        with open_video(path, backend) as video:
            count = video.num_frames
            random_index = int(np.random.default_rng(_frame_seed(seed, key or os.fspath(path))).integers(count))
            for index in (0, count - 1, random_index):  # one call each: a seek per frame, as in training
                frames = video.get_frames([index])
                if frames.shape[0] != 1 or frames.shape[-1] != 3 or frames.size == 0:
                    return f"frame {index} decoded with shape {frames.shape}"
    except DataError as e:
        return " ".join(str(e).split())
    return ""


def _check(relpath: str, *, out_dir: str, backend: str, seed: int) -> tuple[str, str]:
    return relpath, verify_video(Path(out_dir) / relpath, backend=backend, seed=seed, key=relpath)


def _crashed(relpath: str) -> tuple[str, str]:
    return relpath, "the worker process crashed decoding it"


def verify_outputs(rows: Sequence[ManifestRow], out_dir: str | os.PathLike, *, backend: str = "decord",
                   seed: int = 0, workers: int = 1, progress: bool = True) -> VerifyReport:
    """Check every output of ``rows`` that exists (a missing output is not "bad": it was never made)."""
    out_dir = Path(out_dir)
    present = [rel for rel in dict.fromkeys(output_relpath(r) for r in rows) if (out_dir / rel).is_file()]
    check = functools.partial(_check, out_dir=os.fspath(out_dir), backend=backend, seed=seed)
    results = run_parallel(check, present, workers=workers, desc="verify", progress=progress, on_crash=_crashed)
    bad = {rel: reason for rel, reason in results if reason}
    return VerifyReport(len(present), bad)


def write_bad_list(path: str | os.PathLike, bad: dict[str, str]) -> Path:
    """Write ``bad_videos.txt`` atomically (sorted ``path<TAB>reason`` lines; empty when all are good)."""
    return atomic_write_text(path, "".join(f"{rel}\t{reason}\n" for rel, reason in sorted(bad.items())))


def read_bad_list(path: str | os.PathLike) -> dict[str, str]:
    """{relative path: reason} from ``bad_videos.txt``; {} when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    bad = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            rel, sep, reason = line.partition("\t")
            if not sep:
                raise DataError(f"{path}:{number}: expected 'path<TAB>reason', got {line!r}")
            bad[rel] = reason
    return bad
