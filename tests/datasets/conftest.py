"""Fixtures of the data set tests: the small real mp4 files of tests/helpers/videos.py, written
once per test session, list files, and a small data config."""
from __future__ import annotations

from pathlib import Path

import pytest

from stvit_video.bench.videos import VideoSpec
from stvit_video.config import get_cfg_defaults
from tests.helpers.videos import GOOD, write_test_videos


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """name -> path of every good and bad video of tests/helpers/videos.py."""
    return write_test_videos(tmp_path_factory.mktemp("videos"))


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
