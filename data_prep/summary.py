"""The per-split table printed by ``lists`` and ``all`` (and saved as ``OUT/summary.txt``)."""
from __future__ import annotations

from data_prep.annotations import SPLITS
from data_prep.lists import ListsReport

__all__ = ["format_summary"]

_COLUMNS = (("listed", "listed"), ("found", "found"), ("missing", "missing"), ("resized", "resized"),
            ("failed", "failed"), ("in_list", "in the list"))


def format_summary(report: ListsReport) -> str:
    """Table: per split, annotated clips, raw files found and missing, outputs resized, failed
    (no output, or a bad one), lines in the list; then notes (test = val, unlabelled, bad)."""
    header = ["split"] + [title for _, title in _COLUMNS]
    table = []
    totals = {key: 0 for key, _ in _COLUMNS}
    for split in SPLITS:
        counts = report.counts[split]
        cells = [split]
        for key, _ in _COLUMNS:
            value = str(counts[key])
            if key == "in_list" and split == "test" and report.test_from_val:
                value += " (= val)"  # the val videos again: not added to the total
            else:
                totals[key] += counts[key]
            cells.append(value)
        table.append(cells)
    table.append(["total"] + [str(totals[key]) for key, _ in _COLUMNS])
    widths = [max(len(row[i]) for row in [header] + table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header] + table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{len(report.class_names)} classes"]
    if report.test_from_val:
        notes.append("no labelled test videos: test.csv = the val videos (SlowFast convention)")
    bad = sum(report.counts[s]["bad"] for s in SPLITS)
    if bad:
        notes.append(f"{bad} resized videos failed verification (bad_videos.txt) and are counted as failed")
    unlabelled = sum(report.counts[s]["unlabelled"] for s in SPLITS)
    if unlabelled and not report.test_from_val:
        notes.append(f"{unlabelled} videos without a label are not listed")
    return "\n".join(lines + [f"note: {n}" for n in notes])
