"""Other runs beside this one in the report (``TEST.COMPARE_WITH``): their headline and cost.

Each entry reads another run's ``report.json`` (e.g. the Video Swin baseline of an STViT run)
and becomes one row of the report's "Extra results": its top-1 over its full view grid, and in
the note its 1-view top-1, top-5, views and FLOPs per view relative to this run's model. A file
that is missing (the other run has not been tested yet) or unreadable is left out with the
reason, so the comparison never blocks the report it decorates.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = ["comparison_rows"]


def _row(report: dict[str, Any], own_gflops: Optional[float]) -> dict[str, Any]:
    h = report["headline"]
    model = report.get("meta", {}).get("model", {})
    gflops = model.get("gflops_per_view")
    cost = ""
    if isinstance(gflops, (int, float)):
        cost = f"; {gflops:.4g} GFLOPs per view"
        if isinstance(own_gflops, (int, float)) and own_gflops > 0:
            cost += f" ({gflops / own_gflops:.2f}x this model's {own_gflops:.4g})"
    note = (f"{h['views_text']}: top-1 {h['top1']:.2f}%, top-5 {h['top5']:.2f}%, 1 view top-1 "
            f"{h['one_view']['top1']:.2f}%{cost}; {h['videos']} videos")
    return {"top1": h["top1"], "top5": h["top5"], "one_view_top1": h["one_view"]["top1"], "videos": h["videos"],
            "gflops_per_view": gflops, "arch": model.get("arch"), "note": note}


def comparison_rows(paths: Sequence[Union[str, "os.PathLike[str]"]], own_gflops: Optional[float] = None
                    ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Rows for the report's ``meta["extra_results"]`` from other runs' ``report.json`` files.

    Returns:
        ``({"<arch> (<path>)": row}, [why each left-out file was left out])``.
    """
    rows: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            skipped.append(f"{path}: not found (test that run first)")
            continue
        try:
            row = _row(json.loads(path.read_text(encoding="utf-8")), own_gflops)
        except (OSError, ValueError, KeyError, TypeError) as e:
            skipped.append(f"{path}: not a readable report.json ({type(e).__name__}: {e})")
            continue
        rows[f"{row['arch'] or 'model'} ({path})"] = row
    return rows, skipped
