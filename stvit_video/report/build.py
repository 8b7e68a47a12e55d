"""``build_report``: ``report.json`` + ``report.html`` + PNG figures from a :class:`EvalResults`.

    results = EvalResults(...)            # filled by the tester, saved beside the report
    report = build_report(results, out_dir)
    print(summary_text(report, out_dir))

``report.json`` holds every number of the page (accuracies in percent), so scripts never parse
HTML. It depends only on the results: rebuilding from a saved file gives the same bytes (no
timestamps, no absolute output paths).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np
import simplejson

from stvit_video.report import figures
from stvit_video.report.html_page import render_html
from stvit_video.report.metrics import (
    CurvePoint, aggregate, clip_position, clips_text, confusion_matrix, label_ranks, mean_class_accuracy,
    most_confused_pairs, one_view_ranks, per_class_counts, predictions, views_curve,
)
from stvit_video.report.results import EvalResults
from stvit_video.utils.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["FILES", "REPORT_VERSION", "build_report", "report_dict", "summary_text"]

REPORT_VERSION = 1
FILES = {"json": "report.json", "html": "report.html", "views_curve": "views_curve.png",
         "per_class": "per_class.png", "confusion": "confusion.png"}
TOP_PAIRS = 20  # most-confused pairs listed


def _pct(count: int, total: int) -> float:
    return 100.0 * count / total


def report_dict(results: EvalResults, top_pairs: int = TOP_PAIRS) -> dict[str, Any]:
    """Every number of the report as plain JSON types (no files written). Keys: ``headline``,
    ``views_curve``, ``per_class`` (worst first), ``confusion`` (nonzero cells), ``most_confused``,
    ``failed_videos``, ``meta`` (as given); accuracies in percent."""
    r = results
    r.validate()
    scores, has_view = aggregate(r.logits, r.valid, r.ensemble)
    ranks = label_ranks(scores, r.labels, has_view)
    cm = confusion_matrix(r.labels, predictions(scores, has_view), r.num_classes)
    curve = views_curve(r.logits, r.valid, r.labels, r.num_clips, r.num_crops, r.ensemble)
    return {
        "report_version": REPORT_VERSION,
        "units": {"accuracy": "percent", "views": "clips x crops"},
        "headline": _headline(r, ranks, has_view, curve[-1]),
        "views_curve": [{"clips": p.clips, "crops": p.crops, "views": p.views, "label": p.label, "top1": p.top1,
                         "top5": p.top5, "unscored": p.unscored, "clip_ids": list(p.clip_ids),
                         "clip_positions": [clip_position(c, r.num_clips) for c in p.clip_ids],
                         "clips_used": clips_text(p.clip_ids, r.num_clips)} for p in curve],
        "per_class": _per_class(r, ranks, cm),
        **_confusion(r, cm, top_pairs),
        "failed_videos": _failed_videos(r, has_view),
        "meta": r.meta,
        "files": {key: name for key, name in FILES.items() if key != "json"},
    }


def _headline(r: EvalResults, ranks: np.ndarray, has_view: np.ndarray, full: CurvePoint) -> dict[str, Any]:
    n, v, k = r.logits.shape
    one_ranks, one_source = one_view_ranks(r)
    failed_views = ~r.valid
    return {
        "top1": _pct(int((ranks < 1).sum()), n),
        "top5": _pct(int((ranks < 5).sum()), n),
        "mean_class": mean_class_accuracy(r.labels, ranks < 1, k),
        "one_view": {"clips": 1, "crops": 1, "views": 1, "label": "1x1", "view": one_source,
                     "top1": _pct(int((one_ranks < 1).sum()), n), "top5": _pct(int((one_ranks < 5).sum()), n)},
        "full_grid": {"clips": full.clips, "crops": full.crops, "views": full.views, "label": full.label,
                      "top1": full.top1, "top5": full.top5},
        "videos": n,
        "classes": k,
        "classes_present": int((np.bincount(r.labels, minlength=k) > 0).sum()),
        "views_per_video": v,
        "views_text": f"{r.num_clips} clips x {r.num_crops} crops = {v} views",
        "ensemble": r.ensemble,
        "videos_with_failed_views": int(failed_views.any(axis=1).sum()),
        "failed_views": int(failed_views.sum()),
        "unscored_videos": int((~has_view).sum()),
    }


def _per_class(r: EvalResults, ranks: np.ndarray, cm: np.ndarray) -> list[dict[str, Any]]:
    """Per-class top-1 / top-5 and the class each is most confused with, worst first."""
    videos, right1 = per_class_counts(r.labels, ranks < 1, r.num_classes)
    _, right5 = per_class_counts(r.labels, ranks < 5, r.num_classes)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows = []
    for c in np.flatnonzero(videos):
        other = int(off[c].argmax())
        rows.append({
            "id": int(c), "name": r.class_names[c], "videos": int(videos[c]), "correct": int(right1[c]),
            "top1": _pct(int(right1[c]), int(videos[c])), "top5": _pct(int(right5[c]), int(videos[c])),
            "most_confused_with": ({"id": other, "name": r.class_names[other], "count": int(off[c, other])}
                                   if off[c, other] > 0 else None),
        })
    return sorted(rows, key=lambda row: (row["top1"], -row["videos"], row["id"]))


def _confusion(r: EvalResults, cm: np.ndarray, top_pairs: int) -> dict[str, Any]:
    """``confusion`` (the nonzero cells) and ``most_confused`` (the largest off-diagonal cells)."""
    true, predicted = np.nonzero(cm)
    scored_per_class = cm.sum(axis=1)
    return {
        "confusion": {"rows": "true class", "columns": "predicted class", "classes": r.num_classes,
                      "scored_videos": int(cm.sum()),
                      "cells": [[int(t), int(p), int(cm[t, p])] for t, p in zip(true, predicted)]},
        "most_confused": [{"true_id": t, "true_name": r.class_names[t], "pred_id": p, "pred_name": r.class_names[p],
                           "count": c, "share": _pct(c, int(scored_per_class[t]))}
                          for t, p, c in most_confused_pairs(cm, top_pairs)],
    }


def _failed_videos(r: EvalResults, has_view: np.ndarray) -> list[dict[str, Any]]:
    """Every video with a view that failed to decode, with the decoder's reason."""
    failed_views = ~r.valid
    rows = sorted(set(np.flatnonzero(failed_views.any(axis=1)).tolist()) | set(r.failures))
    return [{"row": row, "path": r.paths[row], "label": int(r.labels[row]),
             "class_name": r.class_names[int(r.labels[row])], "failed_views": int(failed_views[row].sum()),
             "views": r.num_views, "scored": bool(has_view[row]),
             "reason": r.failures.get(row, "no reason recorded")} for row in rows]


def _figures(report: dict[str, Any], results: EvalResults) -> dict[str, bytes]:
    """The three PNGs, drawn from the report's own numbers so page and JSON cannot disagree."""
    curve = [CurvePoint(p["clips"], p["crops"], p["top1"], p["top5"], p["unscored"], tuple(p["clip_ids"]))
             for p in report["views_curve"]]
    k = results.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p, c in report["confusion"]["cells"]:
        cm[t, p] = c
    rows = report["per_class"]
    return {
        "views_curve": figures.views_curve_png(curve),
        "per_class": figures.per_class_png([c["name"] for c in rows], [c["top1"] for c in rows],
                                           [c["videos"] for c in rows]),
        "confusion": figures.confusion_png(cm, results.class_names),
    }


def _visualized_pictures(report: dict[str, Any], out: Path) -> dict[str, bytes]:
    """The PNGs of the test job's TEST.VISUALIZE videos (``meta.visualized``) found beside the
    report, keyed ``visualized/<i>`` for the page (a rebuild elsewhere goes without them)."""
    shown = report["meta"].get("visualized")
    videos = shown.get("videos", []) if isinstance(shown, dict) else []
    return {f"visualized/{i}": (out / v["png"]).read_bytes() for i, v in enumerate(videos)
            if isinstance(v, dict) and v.get("png") and (out / v["png"]).is_file()}


def _write(path: Path, data: Union[str, bytes]) -> None:
    """Write atomically, so a reader never sees half a report."""
    if isinstance(data, str):
        atomic_write_text(path, data)
    else:
        atomic_write_bytes(path, data)


def build_report(results: EvalResults, out_dir: Union[str, "os.PathLike[str]"],
                 title: str = "Evaluation report") -> dict[str, Any]:
    """Write ``report.json``, ``report.html``, ``views_curve.png``, ``per_class.png`` and
    ``confusion.png`` into ``out_dir`` (created if needed); returns the report dict (the content
    of ``report.json``). Pictures the tester drew (``meta.visualized``, TEST.VISUALIZE) are read
    from ``out_dir`` and shown in the page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = report_dict(results)
    images = _figures(report, results)
    for key, png in images.items():
        _write(out / FILES[key], png)
    _write(out / FILES["html"], render_html(report, {**images, **_visualized_pictures(report, out)}, title=title))
    # ignore_nan: meta is already NaN-free (None), this is a guard so the file is always valid JSON
    _write(out / FILES["json"], simplejson.dumps(report, indent=1, ignore_nan=True, ensure_ascii=False) + "\n")
    return report


def summary_text(report: dict[str, Any], out_dir: Union[str, "os.PathLike[str]", None] = None) -> str:
    """A few lines for the console: headline numbers, failures, and where the report is."""
    h = report["headline"]
    one = h["one_view"]
    lines = [
        f"test: {h['videos']} videos, {h['views_text']} ({h['ensemble']}): top-1 {h['top1']:.2f}%  "
        f"top-5 {h['top5']:.2f}%  mean-class {h['mean_class']:.2f}%",
        f"1 view ({one['view']}): top-1 {one['top1']:.2f}%  top-5 {one['top5']:.2f}%",
    ]
    if h["videos_with_failed_views"]:
        lines.append(f"{h['videos_with_failed_views']} videos had failed views ({h['failed_views']} views), "
                     f"{h['unscored_videos']} without any decoded view (counted wrong)")
    if out_dir is not None:
        out = Path(out_dir)
        lines.append(f"report: {out / FILES['html']} (numbers in {out / FILES['json']})")
    return "\n".join(lines)
