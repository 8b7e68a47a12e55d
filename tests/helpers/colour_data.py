"""A tiny, learnable video data set and a tiny model config for the trainer and tester tests.

Three classes told apart by colour (red, green, blue background with a moving grey square and
noise), 40 x 40 px, 8 frames: a narrow STViT-R model learns them in a few epochs on the CPU.
The session fixtures that write it and train on it are in tests/engine/conftest.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("blue things", "green things", "red things")  # alphabetical, as data_prep writes ids
SPLITS = {"train": 8, "val": 4, "test": 4}  # videos per class


# class id -> the RGB channel of its background (ids follow the sorted names)
CHANNEL = {0: 2, 1: 1, 2: 0}


def _write(path: Path, colour: int, seed: int, frames: int = 8) -> None:
    _write_segments(path, [(colour, frames)], seed)


def _write_segments(path: Path, segments: list[tuple[int, int]], seed: int) -> None:
    """``(channel, frames)`` segments one after the other, at 10 fps."""
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 40
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20", "g": "4", "threads": "1"}
        t = 0
        for colour, frames in segments:
            for _ in range(frames):
                frame = rng.integers(0, 60, size=(40, 40, 3), dtype=np.uint8)
                frame[..., colour] += 150
                x = (4 * t + int(rng.integers(0, 8))) % 28
                frame[14:26, x:x + 12] = 128
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                t += 1
        container.mux(stream.encode())


def write_long_video(path: Path, labels: list[int], seconds_each: int = 2, seed: int = 999) -> Path:
    """One video of the classes ``labels`` in turn, ``seconds_each`` seconds (10 fps) each."""
    _write_segments(path, [(CHANNEL[label], 10 * seconds_each) for label in labels], seed)
    return path


def write_colour_data(root: Path) -> Path:
    """Write train.csv / val.csv / test.csv, classnames.txt and videos/ (relative paths) into ``root``."""
    (root / "videos").mkdir(parents=True)
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    seed = 0
    for split, per_class in SPLITS.items():
        lines = []
        for label in range(len(CLASSES)):
            for i in range(per_class):
                name = f"videos/{split}_{label}_{i}.mp4"
                # colour order R, G, B in the frame; class ids follow the sorted names
                _write(root / name, colour=CHANNEL[label], seed=seed)
                seed += 1
                lines.append(f"{name} {label}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def tiny_overrides(data: Path, out: Path, *extra) -> list[str]:
    """KEY VALUE overrides of a small, fast run on the colour data set in ``data``."""
    return [
        "DATA.PATH_TO_DATA_DIR", str(data), "OUTPUT_DIR", str(out), "NUM_GPUS", "0",
        "MODEL.NUM_CLASSES", "3", "MODEL.HEAD_DROPOUT", "0.0", "SWIN.EMBED_DIM", "16", "SWIN.NUM_HEADS", "[1, 2, 4, 8]",
        "SWIN.DROP_PATH_RATE", "0.0", "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "1", "DATA.TARGET_FPS", "10",
        "DATA.TRAIN_JITTER_SCALES", "[32, 36]", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
        "DATA.TRAIN_JITTER_SCALES_RELATIVE", "[]",
        "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.BATCH_SIZE", "6", "TEST.BATCH_SIZE", "12",
        "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3", "TEST.SPLIT", "test",
        "TEST.CHECKPOINT_SELECTION", "best", "SOLVER.BASE_LR", "0.002",
        "SOLVER.REFERENCE_BATCH_SIZE", "6", "SOLVER.WARMUP_EPOCHS", "0.5", "SOLVER.MAX_EPOCH", "4",
        "SOLVER.WEIGHT_DECAY", "0.0", "LOG_PERIOD", "2", *map(str, extra),
    ]
