"""Where the raw video of an annotation row is, in the three layouts Kinetics users have.

- ``cvdf``: trimmed clips named ``{youtube_id}_{start:06d}_{end:06d}.<ext>`` (the CVDF
  download), anywhere under the root (split sub-folders are fine: the search is recursive).
- ``classes``: trimmed clips in class folders, ``<label>/<youtube_id>*.<ext>``; folder names
  may use underscores for spaces and drop punctuation ("passing_American_football_in_game").
  A labelled row only takes a file in its label's folder; an unlabelled test row may take a
  file of its id in any folder that no other row took (:func:`match_rows`).
- ``untrimmed``: full YouTube downloads ``{youtube_id}.<ext>``; the clip is cut from
  ``time_start`` to ``time_end`` when resizing.

In every layout, a file whose name carries a time window (``{youtube_id}_{start:06d}_{end:06d}...``)
other than the row's is another clip of the video and never matches the row.

:func:`detect_layout` counts the rows each layout would match and picks the best.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Collection, Iterable, NamedTuple, Sequence

from data_prep.annotations import Annotation, clip_stem
from data_prep.encode import PART_SUFFIX
from stvit_video.utils.errors import DataError
# the loader's own tuple (re-exported), from a module that does not load torch in every worker process
from stvit_video.utils.video_formats import VIDEO_EXTENSIONS, is_video_name

__all__ = ["LAYOUTS", "VIDEO_EXTENSIONS", "FileIndex", "detect_layout", "match_rows", "name_window",
           "normalize_label", "scan_videos"]

# In order of preference when two layouts match as many rows.
LAYOUTS = ("cvdf", "classes", "untrimmed")
# Characters that may follow the YouTube id in a class-folder file name.
_ID_SEPARATORS = "_.- "
# The window a CVDF-style name carries right after the id: "_000014_000024" (%06d: more
# digits only past 999999 s).
_WINDOW = re.compile(r"_(\d{6,})_(\d{6,})")


def normalize_label(name: str) -> str:
    """Compare class names and folder names: lower case, ``_`` as space, punctuation dropped."""
    text = re.sub(r"[^0-9a-z ]+", "", name.lower().replace("_", " "))
    return " ".join(text.split())


def name_window(stem: str, youtube_id: str) -> tuple[int, int] | None:
    """(start, end) seconds of a ``{youtube_id}_{start:06d}_{end:06d}...`` file stem; None if it carries none."""
    match = _WINDOW.match(stem, len(youtube_id))
    return (int(match[1]), int(match[2])) if match else None


def scan_videos(root: str | os.PathLike) -> list[Path]:
    """Video files under ``root`` (recursive, sorted; hidden files and ``.part`` files skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"raw video folder {root} does not exist or is not a folder (--raw)")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith(PART_SUFFIX):
                continue
            if is_video_name(name):
                found.append(Path(folder) / name)
    return found


class FileIndex:
    """Lookup tables over the scanned files, built once.

    Args:
        files: the video files.
        youtube_ids: the ids of the annotation rows (to split ``<id><sep><anything>`` names).
    """

    def __init__(self, files: Sequence[Path], youtube_ids: Iterable[str]) -> None:
        ids = set(youtube_ids)
        lengths = sorted({len(i) for i in ids})
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        self.by_id: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            stem = path.stem
            self.by_stem[stem].append(path)
            for n in lengths:
                if n > len(stem):  # sorted: no longer id fits (and stem[n] would not exist)
                    break
                if stem[:n] in ids and (len(stem) == n or stem[n] in _ID_SEPARATORS):
                    self.by_id[stem[:n]].append(path)

    def cvdf(self, row: Annotation) -> Path | None:
        paths = self.by_stem.get(clip_stem(row.youtube_id, row.time_start, row.time_end))
        return paths[0] if paths else None

    def untrimmed(self, row: Annotation) -> Path | None:
        paths = self.by_stem.get(row.youtube_id)
        return paths[0] if paths else None

    def in_label_folder(self, row: Annotation) -> Path | None:
        """A file of this id in a folder named like the row's label (exact clip name first)."""
        if not row.label:
            return None
        label = normalize_label(row.label)
        candidates = [p for p in self.by_id.get(row.youtube_id, ()) if normalize_label(p.parent.name) == label]
        return _best(candidates, row)

    def classes(self, row: Annotation, claimed: Collection[Path] = ()) -> Path | None:
        """Class-folder lookup: the label's folder; for an unlabelled test row (it has no
        folder to look in), a file of its id in any folder that is not in ``claimed``."""
        found = self.in_label_folder(row)
        if found is None and row.split == "test" and not row.label:
            found = _best([p for p in self.by_id.get(row.youtube_id, ()) if p not in claimed], row)
        return found


def _best(candidates: list[Path], row: Annotation) -> Path | None:
    """The exact clip name first, then by path; files named with another time window are other clips."""
    window = (int(row.time_start), int(row.time_end))
    fitting = [p for p in candidates if name_window(p.stem, row.youtube_id) in (None, window)]
    exact = clip_stem(row.youtube_id, row.time_start, row.time_end)
    return min(fitting, key=lambda p: (p.stem != exact, str(p)), default=None)


class LayoutGuess(NamedTuple):
    """The detected layout and, per layout, how many rows it matched."""

    layout: str
    counts: dict[str, int]


def detect_layout(rows: Sequence[Annotation], index: FileIndex) -> LayoutGuess:
    """The layout that matches the most rows (ties: cvdf, classes, untrimmed).

    The class-folder count only includes files in a folder named like their row's label, so
    a flat folder of ``{youtube_id}.mp4`` files is read as untrimmed, and class folders of
    ``{youtube_id}.mp4`` files as trimmed clips.
    """
    counts = {
        "cvdf": sum(index.cvdf(r) is not None for r in rows),
        "classes": sum(index.in_label_folder(r) is not None for r in rows),
        "untrimmed": sum(index.untrimmed(r) is not None for r in rows),
    }
    best = max(LAYOUTS, key=lambda name: (counts[name], -LAYOUTS.index(name)))
    return LayoutGuess(best, counts)


def match_rows(rows: Sequence[Annotation], index: FileIndex, layout: str) -> list[Path | None]:
    """The raw file of each row under ``layout`` (None: missing).

    ``classes``: every row's label folder is searched first, so the fallback of unlabelled test
    rows never takes a file that a row of any split matched, nor one another fallback took.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout != "classes":
        find = getattr(index, layout)
        return [find(row) for row in rows]
    paths = [index.in_label_folder(row) for row in rows]
    claimed = {p for p in paths if p is not None}
    for number, row in enumerate(rows):
        if paths[number] is None:
            paths[number] = index.classes(row, claimed)
            if paths[number] is not None:
                claimed.add(paths[number])
    return paths
