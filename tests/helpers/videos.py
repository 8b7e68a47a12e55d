"""Small real mp4 files for the data set tests, and their specs.

Good videos (every frame carries its index, see ``stvit_video.bench.videos``):

    name        size   fps        frames  codec     notes
    lossless    64x48  30         60      lossless  decoders compare bit-exactly
    h264        80x60  30         90      h264      yuv420p, like Kinetics
    audio       64x48  30         45      h264      + AAC audio stream
    short       64x48  30         12      h264      shorter than the 8x2 clip span (15 frames)
    tiny        32x24  30         40      h264      smaller than every crop used here
    fps25       64x48  25         50      lossless  non-30 fps
    fps2997     64x48  30000/1001 50      h264      fractional fps, B-frames (pts != dts order)

Bad files: ``missing`` (no file), ``empty`` (0 bytes), ``garbage`` (not a video),
``truncated`` (first half of an mp4 whose index is at the end: cannot open),
``corrupt_mid`` (index at the front, middle third overwritten: opens, then fails mid-stream).
Plus ``spaced``: the h264 video in a Kinetics-style class folder whose name contains a space.

:func:`write_test_videos` writes them all; the ``videos`` fixture of tests/datasets/conftest.py
does so once per session.
"""
from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

from stvit_video.bench.videos import VideoSpec, write_video

GOOD = {
    "lossless": VideoSpec(64, 48, 60, 30, "lossless"),
    "h264": VideoSpec(80, 60, 90, 30, "h264"),
    "audio": VideoSpec(64, 48, 45, 30, "h264", audio=True),
    "short": VideoSpec(64, 48, 12, 30, "h264"),
    "tiny": VideoSpec(32, 24, 40, 30, "h264"),
    "fps25": VideoSpec(64, 48, 50, 25, "lossless"),
    "fps2997": VideoSpec(64, 48, 50, Fraction(30000, 1001), "h264", bframes=3, texture=True),
}
BAD = ("missing", "empty", "garbage", "truncated", "corrupt_mid")


def write_test_videos(root: Path) -> dict[str, Path]:
    """Write every good and bad video above into ``root``: name -> path."""
    paths = {name: write_video(root / f"{name}.mp4", spec) for name, spec in GOOD.items()}
    paths["missing"] = root / "missing.mp4"
    paths["empty"] = root / "empty.mp4"
    paths["empty"].write_bytes(b"")
    paths["garbage"] = root / "garbage.mp4"
    paths["garbage"].write_bytes(b"this is not a video\n" * 64)
    data = paths["h264"].read_bytes()
    paths["truncated"] = root / "truncated.mp4"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    faststart = bytearray(write_video(root / "faststart.mp4", VideoSpec(64, 48, 60, faststart=True)).read_bytes())
    third = len(faststart) // 3
    faststart[third : 2 * third] = b"\x5a" * third
    paths["corrupt_mid"] = root / "corrupt_mid.mp4"
    paths["corrupt_mid"].write_bytes(bytes(faststart))
    # a Kinetics-style class folder whose name contains a space
    spaced = root / "air drumming" / "clip 01.mp4"
    spaced.parent.mkdir()
    shutil.copy(paths["h264"], spaced)
    paths["spaced"] = spaced
    return paths
