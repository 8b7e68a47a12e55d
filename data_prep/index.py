"""``index``: annotation rows -> raw files (any layout) -> probed manifest rows."""
from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple, Sequence

from data_prep.annotations import SPLITS, Annotation, clip_stem, deduplicate, format_time, read_annotations
from data_prep.layouts import LAYOUTS, FileIndex, detect_layout, match_rows, scan_videos
from data_prep.manifest import ManifestRow
from data_prep.parallel import run_parallel
from data_prep.probe import Probe, probe_video
from stvit_video.utils.errors import DataError

__all__ = ["IndexResult", "build_index", "manifest_row", "missing_by_split", "probe_crashed", "probe_raw"]

# How many ids a warning names.
_EXAMPLES = 3
# A "trimmed" file whose median length exceeds this many clip lengths looks untrimmed.
_UNTRIMMED_RATIO = 3.0


class IndexResult(NamedTuple):
    """What ``index`` found.

    Attributes:
        rows: one manifest row per distinct annotated clip, in annotation order.
        layout: the layout used (detected or given).
        layout_counts: rows matched per layout during detection ({} when given).
        duplicates: annotation rows dropped as repeats of an earlier row.
        warnings: things the user should look at (one line each).
    """

    rows: list[ManifestRow]
    layout: str
    layout_counts: dict[str, int]
    duplicates: int
    warnings: list[str]


def probe_raw(path: str) -> Probe:
    """Probe a raw file as ``index`` does: header and first frame (``folder`` probes its videos alike)."""
    return probe_video(path, decode_first=True)


def probe_crashed(path: str) -> Probe:
    """The probe of a file whose worker process died reading it (``on_crash`` of :func:`run_parallel`)."""
    return Probe(False, "the worker process crashed reading this file (FFmpeg)")


def manifest_row(annotation: Annotation, path: Path | None, probe: Probe | None, trim: bool) -> ManifestRow:
    """The manifest row of ``annotation``: status missing (no ``path``), bad (the probe failed,
    or a trimmed clip starts after the end of the file) or ok, with the probed numbers."""
    common = dict(label=annotation.label, split=annotation.split, youtube_id=annotation.youtube_id,
                  time_start=annotation.time_start, time_end=annotation.time_end, trim=trim,
                  source=annotation.source)
    if path is None or probe is None:
        return ManifestRow(path="", duration=0.0, fps=0.0, frames=0, width=0, height=0, status="missing",
                           reason="no matching file", **common)
    status, reason = ("ok", "") if probe.ok else ("bad", probe.reason)
    if probe.ok and trim and annotation.time_start >= probe.duration:
        status = "bad"
        reason = (f"the clip starts at {format_time(annotation.time_start)} s but the video is only "
                  f"{probe.duration:.1f} s long")
    return ManifestRow(path=str(path), duration=probe.duration, fps=probe.fps, frames=probe.frames,
                       width=probe.width, height=probe.height, status=status, reason=reason, **common)


def _layout_warnings(rows: list[ManifestRow], layout: str) -> list[str]:
    """Hints when the durations contradict the layout (trimmed vs untrimmed)."""
    probed = [r for r in rows if r.status == "ok" or (r.status == "bad" and r.duration > 0)]
    if not probed:
        return []
    clip_length = statistics.median(r.time_end - r.time_start for r in probed)
    file_length = statistics.median(r.duration for r in probed)
    if layout != "untrimmed" and file_length > _UNTRIMMED_RATIO * clip_length:
        return [f"the files are {file_length:.0f} s long (median) but the clips {clip_length:.0f} s: they look "
                "untrimmed; if so, re-run with --layout untrimmed"]
    starts_late = sum(r.status == "bad" and "clip starts at" in r.reason for r in rows)
    if layout == "untrimmed" and starts_late > len(probed) / 2:
        return [f"{starts_late} clips start after the end of their file: the files look already trimmed; "
                "re-run with --layout cvdf or classes"]
    return []


def _split_overlap_warnings(rows: Sequence[Annotation]) -> list[str]:
    """A warning naming YouTube ids that occur in several splits (one video in training and evaluation)."""
    splits: dict[str, set[str]] = defaultdict(set)
    first: dict[str, str] = {}
    for row in rows:
        splits[row.youtube_id].add(row.split)
        first.setdefault(row.youtube_id, row.source)
    shared = [youtube_id for youtube_id, found in splits.items() if len(found) > 1]
    if not shared:
        return []
    examples = ", ".join(f"{youtube_id} ({'/'.join(s for s in SPLITS if s in splits[youtube_id])}; "
                         f"{first[youtube_id]})" for youtube_id in shared[:_EXAMPLES])
    return [f"{len(shared)} YouTube ids appear in several splits, e.g. {examples}: the same video in training "
            "and evaluation inflates the accuracy; check the annotation files"]


def build_index(annotation_paths: Sequence[str | os.PathLike], raw_root: str | os.PathLike, *,
                layout: str = "auto", workers: int = 1, progress: bool = True) -> IndexResult:
    """Match every annotation row to its raw file and probe the file.

    Args:
        annotation_paths: official CSV files, or folders of them.
        raw_root: folder searched recursively for videos.
        layout: "auto" or one of :data:`~data_prep.layouts.LAYOUTS`.
        workers: processes probing files.

    Raises:
        DataError: unreadable annotations, no raw folder, or not a single row matched a file
            (the message shows an expected and a found file name).
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise DataError(f"--layout {layout!r}: use auto or one of {', '.join(LAYOUTS)}")
    annotations, dropped = deduplicate(read_annotations(annotation_paths))
    if not annotations:
        raise DataError(f"no annotation rows in {', '.join(map(str, annotation_paths))}")
    files = scan_videos(raw_root)
    files_index = FileIndex(files, (a.youtube_id for a in annotations))
    counts: dict[str, int] = {}
    if layout == "auto":
        layout, counts = detect_layout(annotations, files_index)
    paths = match_rows(annotations, files_index, layout)
    if not any(paths):
        example = annotations[0]
        raise DataError(
            f"none of the {len(annotations)} annotation rows matches a video under {raw_root} "
            f"(layout {layout}; {len(files)} video files found, e.g. "
            f"{files[0].name if files else 'none'}; row {example.source} expects e.g. "
            f"{_expected_name(example, layout)}); check --raw and --layout")
    found = sorted({str(p) for p in paths if p is not None})
    probes = dict(zip(found, run_parallel(probe_raw, found, workers=workers, desc="probe", progress=progress,
                                          on_crash=probe_crashed)))
    trim = layout == "untrimmed"
    rows = [manifest_row(a, p, probes.get(str(p)) if p else None, trim) for a, p in zip(annotations, paths)]
    warnings = _layout_warnings(rows, layout) + _split_overlap_warnings(annotations)
    if dropped:
        warnings.append(f"{len(dropped)} repeated annotation rows ignored (e.g. {dropped[0].source})")
    return IndexResult(rows, layout, counts, len(dropped), warnings)


def _expected_name(row: Annotation, layout: str) -> str:
    stem = clip_stem(row.youtube_id, row.time_start, row.time_end)
    return {"cvdf": f"{stem}.mp4", "classes": f"{row.label or '<label>'}/{row.youtube_id}*.mp4",
            "untrimmed": f"{row.youtube_id}.mp4"}[layout]


def missing_by_split(rows: Sequence[ManifestRow]) -> dict[str, tuple[int, int]]:
    """split -> (missing videos, rows), for the splits present."""
    counts = {}
    for split in SPLITS:
        in_split = [r for r in rows if r.split == split]
        if in_split:
            counts[split] = (sum(r.status == "missing" for r in in_split), len(in_split))
    return counts
