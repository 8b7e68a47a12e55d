"""The manifest: one row per annotated clip, written by ``index`` and read by every later step.

CSV (``.csv``) or JSON lines (``.jsonl``), by the file's suffix. Columns::

    path        raw video file ("" when missing)
    label       class name ("" for an unlabelled test row)
    split       train / val / test
    youtube_id, time_start, time_end   the annotation
    trim        1: cut [time_start, time_end) out of an untrimmed file when resizing
    duration, fps, frames, width, height   of the raw file (0 when unknown)
    status      ok / missing / bad
    reason      why missing or bad
    source      annotation file:line of the row

The resized clip of a row is ``OUT/`` + :func:`output_relpath` (``videos/{split}/{stem}.mp4``).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from data_prep.annotations import SPLITS, check_youtube_id, clip_stem, format_time
from stvit_video.utils.atomic import atomic_output
from stvit_video.utils.errors import DataError

__all__ = ["FIELDS", "STATUSES", "ManifestRow", "default_manifest_path", "output_relpath", "read_manifest",
           "write_manifest"]

STATUSES = ("ok", "missing", "bad")


@dataclass(frozen=True)
class ManifestRow:
    """One annotated clip and its raw file; see the module docstring for the fields."""

    path: str
    label: str
    split: str
    youtube_id: str
    time_start: float
    time_end: float
    trim: bool
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    status: str
    reason: str
    source: str


FIELDS = tuple(f.name for f in dataclasses.fields(ManifestRow))
_TYPES = {f.name: f.type for f in dataclasses.fields(ManifestRow)}


def output_relpath(row: ManifestRow) -> str:
    """Where the resized clip goes, relative to OUT: ``videos/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4``.

    Unique per (split, youtube_id, start, end), which is how the index de-duplicates rows.
    """
    return f"videos/{row.split}/{clip_stem(row.youtube_id, row.time_start, row.time_end)}.mp4"


def default_manifest_path(out_dir: str | os.PathLike) -> Path:
    """``OUT/manifest.csv``, or ``OUT/manifest.jsonl`` if only that one exists."""
    out_dir = Path(out_dir)
    csv_path, jsonl_path = out_dir / "manifest.csv", out_dir / "manifest.jsonl"
    return jsonl_path if jsonl_path.is_file() and not csv_path.is_file() else csv_path


def _text(row: ManifestRow) -> dict[str, str]:
    values = dataclasses.asdict(row)
    values["trim"] = "1" if row.trim else "0"
    values["time_start"], values["time_end"] = format_time(row.time_start), format_time(row.time_end)
    values["duration"], values["fps"] = f"{row.duration:.3f}", f"{row.fps:.6g}"
    return {k: str(v) for k, v in values.items()}


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> Path:
    """Write ``rows`` as CSV or JSONL (by suffix), atomically (:mod:`stvit_video.utils.atomic`)."""
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl"):
        raise DataError(f"manifest {path}: use a .csv or .jsonl file name")
    with atomic_output(path) as temp, temp.open("w", newline="", encoding="utf-8") as f:
        if path.suffix == ".csv":
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(_text(row) for row in rows)
        else:
            for row in rows:
                f.write(json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n")
    return path


def _convert(name: str, value, where: str):
    kind = _TYPES[name]
    try:
        if kind == "bool":
            return str(value).strip().lower() in ("1", "true")
        if kind == "int":
            return int(float(value))
        if kind == "float":
            return float(value)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: column {name} = {value!r} is not a {kind}") from e
    return "" if value is None else str(value)


def _row(values: dict, where: str) -> ManifestRow:
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise DataError(f"{where}: missing manifest column(s) {', '.join(missing)} (write it with `data_prep index`)")
    row = ManifestRow(**{name: _convert(name, values[name], where) for name in FIELDS})
    if row.status not in STATUSES:
        raise DataError(f"{where}: status {row.status!r} is not one of {', '.join(STATUSES)}")
    # split and id make the output path (output_relpath): checked again for hand-edited manifests
    if row.split not in SPLITS:
        raise DataError(f"{where}: split {row.split!r} is not one of {', '.join(SPLITS)} (re-run `data_prep index`)")
    check_youtube_id(row.youtube_id, where)
    return row


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest`.

    Raises:
        DataError: the file is missing, or a column or value is wrong (names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no manifest {path}: run `python -m data_prep index` first (or pass --manifest)")
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        values = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{number}: not JSON: {e}") from e
                    rows.append(_row(values, f"{path}:{number}"))
        else:
            for number, values in enumerate(csv.DictReader(f), start=2):
                rows.append(_row(values, f"{path}:{number}"))
    return rows
