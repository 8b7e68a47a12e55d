"""``lists``: the files the training loader reads, in OUT.

- ``OUT/{train,val,test}.csv``: one ``relative/path.mp4 <label_id>`` line per usable video,
  one space between (the loader splits at the *last* space), paths relative to OUT (the
  loader resolves relative paths against the list's folder);
- ``OUT/classnames.txt``: the class names in id order; ``OUT/classids.json``: {name: id}.

Class id = index in the alphabetically sorted class names of all splits (the Kinetics
convention), taken from the annotations, so a class whose videos are all missing keeps its id.
A video is listed when its resized output exists and is not in ``bad_videos.txt``. When the
test split has no labels (Kinetics-600/700), test.csv is a copy of val.csv (the SlowFast
convention) and :attr:`ListsReport.test_from_val` says so.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from data_prep.annotations import SPLITS
from data_prep.manifest import ManifestRow, output_relpath
from stvit_video.utils.atomic import atomic_write_text

__all__ = ["COUNT_KEYS", "ListsReport", "build_lists", "class_names", "write_lists"]

# Per-split counts: rows, raw file found, raw missing, output present, no output or bad
# output, output decoded badly (part of failed), rows without a label, lines in the list.
COUNT_KEYS = ("listed", "found", "missing", "resized", "failed", "bad", "unlabelled", "in_list")


class ListsReport(NamedTuple):
    """The lists to write and how each split was counted."""

    class_names: list[str]
    entries: dict[str, list[tuple[str, int]]]  # split -> (relative path, class id)
    counts: dict[str, Counter]  # split -> COUNT_KEYS
    test_from_val: bool


def class_names(rows: Sequence[ManifestRow]) -> list[str]:
    """The sorted distinct labels of all rows (empty labels of unlabelled test rows excluded)."""
    return sorted({row.label for row in rows if row.label})


def build_lists(rows: Sequence[ManifestRow], out_dir: str | os.PathLike, bad: Mapping[str, str]) -> ListsReport:
    """Decide what goes in every list (nothing is written)."""
    out_dir = Path(out_dir)
    names = class_names(rows)
    ids = {name: i for i, name in enumerate(names)}
    entries: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    counts: dict[str, Counter] = {split: Counter({k: 0 for k in COUNT_KEYS}) for split in SPLITS}
    for row in rows:
        count, relpath = counts[row.split], output_relpath(row)
        count["listed"] += 1
        if row.status == "missing":
            count["missing"] += 1
            continue
        count["found"] += 1
        if not (out_dir / relpath).is_file():
            count["failed"] += 1
            continue
        count["resized"] += 1
        if relpath in bad:
            count["failed"] += 1
            count["bad"] += 1
            continue
        if not row.label:
            count["unlabelled"] += 1
            continue
        entries[row.split].append((relpath, ids[row.label]))
    test_from_val = not any(row.label for row in rows if row.split == "test")
    if test_from_val:
        entries["test"] = list(entries["val"])
    for split in SPLITS:
        counts[split]["in_list"] = len(entries[split])
    return ListsReport(names, entries, counts, test_from_val)


def write_lists(report: ListsReport, out_dir: str | os.PathLike) -> list[Path]:
    """Write the three lists, classnames.txt and classids.json, each atomically; return their paths.

    Every text is built before the first file is replaced, so an error while building them
    leaves the previous set whole (no mix of old and new lists).
    """
    out_dir = Path(out_dir)
    texts = {f"{split}.csv": "".join(f"{rel} {label}\n" for rel, label in report.entries[split]) for split in SPLITS}
    texts["classnames.txt"] = "".join(f"{name}\n" for name in report.class_names)
    texts["classids.json"] = json.dumps({name: i for i, name in enumerate(report.class_names)}, indent=1,
                                        ensure_ascii=False) + "\n"
    return [atomic_write_text(out_dir / name, text) for name, text in texts.items()]
