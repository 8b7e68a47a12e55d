"""Where the raw video of an annotation row is, in the three layouts Kinetics users have.

- ``cvdf``: trimmed clips named ``{youtube_id}_{start:06d}_{end:06d}.<ext>`` (the CVDF
  download), anywhere under the root (split sub-folders are fine: the search is recursive).
- ``classes``: trimmed clips in class folders, ``<label>/<youtube_id>*.<ext>``; folder names
  may use underscores for spaces and drop punctuation ("passing_American_football_in_game").
- ``untrimmed``: full YouTube downloads ``{youtube_id}.<ext>``; the clip is cut from
  ``time_start`` to ``time_end`` when resizing.

:func:`detect_layout` counts the rows each layout would match and picks the best.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from data_prep.annotations import Annotation, clip_stem
from data_prep.encode import PART_SUFFIX
from stvit_video.utils.errors import DataError

__all__ = ["LAYOUTS", "VIDEO_EXTENSIONS", "FileIndex", "detect_layout", "match_rows", "normalize_label", "scan_videos"]

# = stvit_video.datasets.video_list.VIDEO_EXTENSIONS (a test checks it); not imported from
# there because importing stvit_video.datasets loads torch (3 s in every worker process).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpeg", ".mpg")
# In order of preference when two layouts match as many rows.
LAYOUTS = ("cvdf", "classes", "untrimmed")
# Characters that may follow the YouTube id in a class-folder file name.
_ID_SEPARATORS = "_.- "


def normalize_label(name: str) -> str:
    """Compare class names and folder names: lower case, ``_`` as space, punctuation dropped."""
    text = re.sub(r"[^0-9a-z ]+", "", name.lower().replace("_", " "))
    return " ".join(text.split())


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
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
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

    def classes(self, row: Annotation) -> Path | None:
        """Class-folder lookup; falls back to a file of this id in any folder (test rows have no label)."""
        return self.in_label_folder(row) or _best(self.by_id.get(row.youtube_id, []), row)


def _best(candidates: list[Path], row: Annotation) -> Path | None:
    if not candidates:
        return None
    exact = clip_stem(row.youtube_id, row.time_start, row.time_end)
    return sorted(candidates, key=lambda p: (p.stem != exact, str(p)))[0]


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
    """The raw file of each row under ``layout`` (None: missing)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    find = getattr(index, layout)
    return [find(row) for row in rows]
