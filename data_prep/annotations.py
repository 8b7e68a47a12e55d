"""The official Kinetics-400/600/700 annotation CSVs.

Header ``label,youtube_id,time_start,time_end,split[,is_cc]`` (column order free); labels with
spaces are quoted ("air drumming"); ``split`` is ``train``, ``val`` or ``validate``, ``test``;
test rows may have an empty label, and some test files have no ``label`` column at all.
Times are seconds into the YouTube video; the CVDF clips are named
``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` (see :func:`clip_stem`).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from stvit_video.utils.atomic import atomic_write_text
from stvit_video.utils.errors import DataError

__all__ = ["REQUIRED_COLUMNS", "SPLITS", "SPLIT_ALIASES", "YOUTUBE_ID", "Annotation", "check_youtube_id",
           "clip_stem", "deduplicate", "find_annotation_files", "format_time", "read_annotation_csv",
           "read_annotations", "write_annotation_csv"]

SPLITS = ("train", "val", "test")
# value of the `split` column -> our split name
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "validate": "val",
                 "validation": "val", "test": "test", "testing": "test"}
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end", "split")  # + label, except in test files
OFFICIAL_HEADER = ("label", "youtube_id", "time_start", "time_end", "split", "is_cc")
# YouTube's alphabet (11 characters there; other lengths kept for hand-made sets). The id
# becomes a file name under OUT, so no "/", "\\", ".." or space may get through.
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Annotation(NamedTuple):
    """One annotated clip.

    Attributes:
        label: class name; "" for an unlabelled test row.
        youtube_id: the video id (11 characters on YouTube; may contain ``-`` and ``_``).
        time_start, time_end: the clip, seconds into the YouTube video.
        split: "train", "val" or "test" (``validate`` is read as "val").
        source: ``file:line`` of the row, for messages.
    """

    label: str
    youtube_id: str
    time_start: float
    time_end: float
    split: str
    source: str


def clip_stem(youtube_id: str, time_start: float, time_end: float) -> str:
    """CVDF file stem ``{youtube_id}_{start:06d}_{end:06d}`` (times truncated to whole seconds, as CVDF does)."""
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}"


def format_time(seconds: float) -> str:
    """``14`` for 14.0, ``14.5`` for 14.5: how the official CSVs write times."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def find_annotation_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The CSV files named by ``paths``: files as given, folders -> their ``*.csv`` (sorted)."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found = sorted(p for p in item.glob("*.csv") if p.is_file())
            if not found:
                raise DataError(f"annotation folder {item} holds no *.csv files")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"annotation file {item} does not exist")
    if not files:
        raise DataError("no annotation CSV given (--annotations FILE_OR_FOLDER ...)")
    return files


def check_youtube_id(youtube_id: str, where: str) -> str:
    """``youtube_id`` if it is 1-64 characters of ``A-Z a-z 0-9 _ -``; else a DataError naming ``where``."""
    if not YOUTUBE_ID.fullmatch(youtube_id):
        what = "empty youtube_id" if not youtube_id else f"youtube_id {youtube_id!r} is not a YouTube id"
        raise DataError(f"{where}: {what} (expected 1-64 characters of A-Z, a-z, 0-9, _ and -, "
                        f"e.g. -0Hw6Jp_8ns); fix or remove the row")
    return youtube_id


def _parse_time(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise DataError(f"{where}: {column} {text!r} is not a number of seconds") from e
    if not value >= 0:  # also rejects NaN
        raise DataError(f"{where}: {column} {text!r} must be >= 0")
    return value


def _parse_row(fields: dict[str, str], where: str) -> Annotation:
    split_value = fields["split"].strip()
    split = SPLIT_ALIASES.get(split_value.lower())
    if split is None:
        raise DataError(f"{where}: split {split_value!r} is not one of {', '.join(sorted(SPLIT_ALIASES))}")
    youtube_id = check_youtube_id(fields["youtube_id"].strip(), where)
    label = fields.get("label", "").strip()
    if not label and split != "test":
        why = "" if "label" in fields else " (the file has no label column)"
        raise DataError(f"{where}: a {split} row has no label{why}")
    start = _parse_time(fields["time_start"].strip(), where, "time_start")
    end = _parse_time(fields["time_end"].strip(), where, "time_end")
    if end <= start:
        raise DataError(f"{where}: time_end {format_time(end)} is not after time_start {format_time(start)}")
    return Annotation(label, youtube_id, start, end, split, where)


def read_annotation_csv(path: str | os.PathLike) -> list[Annotation]:
    """Parse one official annotation CSV.

    Raises:
        DataError: the file cannot be read, a required column is missing, or a row is malformed
            (wrong number of fields, a time that is not a number, end <= start, an unknown
            split, a labelled split without a label); the message names the file and line.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: tolerate an Excel BOM
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read the annotation file {path}: {e}") from e
    if not rows:
        raise DataError(f"annotation file {path} is empty (expected the header {','.join(OFFICIAL_HEADER)})")
    header = [name.strip().lower() for name in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {', '.join(missing)} in the header "
                        f"{','.join(rows[0])!r}; expected {','.join(OFFICIAL_HEADER[:5])}[,is_cc]")
    annotations = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        where = f"{path}:{number}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(row)}: {row!r}")
        annotations.append(_parse_row(dict(zip(header, row)), where))
    return annotations


def read_annotations(paths: Sequence[str | os.PathLike]) -> list[Annotation]:
    """Rows of every CSV in ``paths`` (files or folders of ``*.csv``), in file order."""
    rows: list[Annotation] = []
    for path in find_annotation_files(paths):
        rows.extend(read_annotation_csv(path))
    return rows


def deduplicate(rows: Iterable[Annotation]) -> tuple[list[Annotation], list[Annotation]]:
    """Drop repeated clips (same split, youtube_id, start and end); return (kept, dropped).

    The first occurrence wins; the output file name of a clip is derived from exactly these
    four fields, so a repeat would write the same file twice.
    """
    kept: dict[tuple, Annotation] = {}
    dropped = []
    for row in rows:
        key = (row.split, row.youtube_id, int(row.time_start), int(row.time_end))
        if key in kept:
            dropped.append(row)
        else:
            kept[key] = row
    return list(kept.values()), dropped


def _quote(label: str) -> str:
    if any(c in label for c in ' ,"'):
        return '"' + label.replace('"', '""') + '"'
    return label


def write_annotation_csv(path: str | os.PathLike, rows: Iterable[Annotation], *, is_cc: bool = True) -> Path:
    """Write ``rows`` in the official format (labels with spaces quoted, as the CVDF files do),
    atomically.

    ``rows[i].split`` is written as given (so "validate" stays "validate").
    """
    header = OFFICIAL_HEADER if is_cc else OFFICIAL_HEADER[:5]
    lines = [",".join(header)]
    for row in rows:
        fields = [_quote(row.label), row.youtube_id, format_time(row.time_start), format_time(row.time_end),
                  row.split]
        lines.append(",".join(fields + (["0"] if is_cc else [])))
    return atomic_write_text(path, "\n".join(lines) + "\n")
