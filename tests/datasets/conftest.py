"""Small real mp4 files, written once per test session, and a small data config.

Good videos (every frame carries its index, see ``stvit_video.datasets.synthetic``):

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
"""
from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from stvit_video.config import get_cfg_defaults
from stvit_video.datasets.synthetic import VideoSpec, write_video

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


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """name -> path of every good and bad video above."""
    root = tmp_path_factory.mktemp("videos")
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


@pytest.fixture(scope="session")
def good_specs() -> dict[str, VideoSpec]:
    """name -> how each good video was written."""
    return dict(GOOD)


@pytest.fixture
def write_lists(tmp_path):
    """``write_lists(rows)``: the same ``path label`` rows as train/val/test.csv in a fresh folder."""

    def write(rows: list[tuple[Path, int]], folder: Path | None = None) -> Path:
        folder = folder or tmp_path / "lists"
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{path} {label}\n" for path, label in rows)
        for split in ("train", "val", "test"):
            (folder / f"{split}.csv").write_text(text)
        return folder

    return write


@pytest.fixture
def small_cfg():
    """Defaults shrunk for tiny videos: 8x2 clips, 56 crops, 10 classes, 3x3 test views."""

    def make(data_dir: Path | str = "", *opts):
        cfg = get_cfg_defaults()
        cfg.merge_from_list([
            "DATA.PATH_TO_DATA_DIR", str(data_dir), "DATA.NUM_FRAMES", 8, "DATA.SAMPLING_RATE", 2,
            "DATA.TRAIN_JITTER_SCALES", [64, 80], "DATA.TRAIN_CROP_SIZE", 56, "DATA.TEST_CROP_SIZE", 56,
            "MODEL.NUM_CLASSES", 10, "TEST.NUM_ENSEMBLE_VIEWS", 3, "TEST.NUM_SPATIAL_CROPS", 3,
            "DATA_LOADER.NUM_RETRIES", 2, "DATA_LOADER.NUM_WORKERS", 0, "TRAIN.BATCH_SIZE", 4,
            "TEST.BATCH_SIZE", 4, "NUM_GPUS", 0, *opts,
        ])
        return cfg

    return make
