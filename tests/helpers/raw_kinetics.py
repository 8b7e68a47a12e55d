"""Tiny Kinetics-like raw data sets (annotation CSVs + raw videos), one per raw layout.

The same nine annotation rows in every layout (times 1 -> 3 s, 10 fps, 64x48 frames):

    split  label          youtube_id    raw file
    train  air drumming   aaaaaaaaa-1   good (label with a space; id with - and _)
    train  air drumming   bbbbbbbbb_2   good
    train  abseiling      ccccccccccc   good
    train  abseiling      ddddddddddd   MISSING
    train  zumba          eeeeeeeeeee   good
    val    abseiling      fffffffffff   CORRUPT (not a video)      split value "validate"
    val    air drumming   ggggggggggg   good
    val    bowling        hhhhhhhhhhh   good (a class only in val)
    test   (no label)     iiiiiiiiiii   good                       -> test.csv = val

Every frame carries its index (``stvit_video.bench.videos.frame_pattern``): an
untrimmed file holds frames 0..39 (4 s), a trimmed clip frames 10..29 (seconds 1 to 3), so
a correct trim and a trimmed clip both give 20 frames numbered 10..29.

:func:`build_raw_set` writes one layout; the ``raw_sets`` fixture of tests/data_prep/conftest.py
writes all three once per test session.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from data_prep.annotations import Annotation, clip_stem, write_annotation_csv
from data_prep.encode import EncoderSettings, H264Writer
from stvit_video.bench.videos import frame_pattern

WIDTH, HEIGHT, FPS = 64, 48, 10
START, END = 1, 3
CLIP_FRAMES = range(START * FPS, END * FPS)  # 10..29
UNTRIMMED_FRAMES = range(0, 4 * FPS)

ROWS = [
    Annotation("air drumming", "aaaaaaaaa-1", START, END, "train", ""),
    Annotation("air drumming", "bbbbbbbbb_2", START, END, "train", ""),
    Annotation("abseiling", "ccccccccccc", START, END, "train", ""),
    Annotation("abseiling", "ddddddddddd", START, END, "train", ""),
    Annotation("zumba", "eeeeeeeeeee", START, END, "train", ""),
    Annotation("abseiling", "fffffffffff", START, END, "validate", ""),
    Annotation("air drumming", "ggggggggggg", START, END, "validate", ""),
    Annotation("bowling", "hhhhhhhhhhh", START, END, "validate", ""),
    Annotation("", "iiiiiiiiiii", START, END, "test", ""),
]
MISSING, CORRUPT = "ddddddddddd", "fffffffffff"
CLASS_NAMES = ["abseiling", "air drumming", "bowling", "zumba"]
SPLIT_OF = {"train": "train", "validate": "val", "test": "test"}


def write_indexed_video(path: Path, frames: range, *, fps: int = FPS) -> Path:
    """An h264 mp4 whose frame k shows the index ``frames[k]`` (x264's default keyframe interval)."""
    with H264Writer(path, width=WIDTH, height=HEIGHT, fps=fps, settings=EncoderSettings(crf=18)) as writer:
        for index in frames:
            writer.write(frame_pattern(index, HEIGHT, WIDTH))
    return path


def raw_file_path(root: Path, row: Annotation, layout: str, number: int) -> Path:
    """Where ``layout`` keeps the raw file of ``row`` (the ``number``-th of :data:`ROWS`) under ``root``."""
    stem = clip_stem(row.youtube_id, row.time_start, row.time_end)
    split = SPLIT_OF[row.split]
    if layout == "cvdf":
        return root / split / f"{stem}.mp4"
    if layout == "classes":
        folder = (row.label or "test").replace(" ", "_")  # underscores instead of spaces
        name = stem if number % 2 else row.youtube_id  # both naming styles occur
        return root / split / folder / f"{name}.mp4"
    return root / f"{row.youtube_id}.mp4"


def build_raw_set(root: Path, layout: str) -> SimpleNamespace:
    """Annotations (root/annotations/{train,validate,test}.csv) and raw videos (root/raw) in ``layout``."""
    raw = root / "raw"
    clip = None
    for number, row in enumerate(ROWS):
        if row.youtube_id == MISSING:
            continue
        path = raw_file_path(raw, row, layout, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        if row.youtube_id == CORRUPT:
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42 but then nothing a decoder can use\n" * 40)
        elif layout == "untrimmed":
            write_indexed_video(path, UNTRIMMED_FRAMES)
        elif clip is None:
            clip = write_indexed_video(path, CLIP_FRAMES)
        else:
            path.write_bytes(clip.read_bytes())  # the same clip: encode once
    annotations = root / "annotations"
    for split in ("train", "validate", "test"):
        write_annotation_csv(annotations / f"{split}.csv", [r for r in ROWS if r.split == split])
    return SimpleNamespace(root=root, annotations=annotations, raw=raw, layout=layout)
