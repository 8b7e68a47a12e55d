"""build_report: report.json numbers, the self-contained HTML page, the PNG figures."""
import base64
import io
import json
import time
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from stvit_video.report import (
    aggregate, build_report, confusion_matrix, headline_metrics, mean_class_accuracy, most_confused_pairs,
    predictions, select_views, summary_text, topk_accuracy, topk_correct,
)
from stvit_video.report.figures import MAX_CONFUSION_CLASSES, confusion_png
from stvit_video.report.metrics import clips_text, confused_classes, one_view_ranks
from tests.report.conftest import curve_case, random_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


def _no_constants(name):
    raise AssertionError(f"report.json holds {name}")


def _load_json(path):
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


def _expected(results, top_pairs=20):
    """Every section of report.json recomputed from the metric functions and plain numpy."""
    r = results
    n, v, k = r.logits.shape
    scores, has_view = aggregate(r.logits, r.valid, r.ensemble)
    pred = predictions(scores, has_view)
    ok1 = topk_correct(scores, r.labels, 1, has_view)
    ok5 = topk_correct(scores, r.labels, 5, has_view)
    curve = []
    for crops in sorted({1, r.num_crops}):
        for clips in range(1, r.num_clips + 1):
            s, h = aggregate(r.logits, r.valid, r.ensemble, select_views(r.num_clips, r.num_crops, clips, crops))
            ids = [int((2 * i + 1) * r.num_clips // (2 * clips)) for i in range(clips)]
            curve.append({"clips": clips, "crops": crops, "views": clips * crops, "label": f"{clips}x{crops}",
                          "top1": topk_accuracy(s, r.labels, 1, h), "top5": topk_accuracy(s, r.labels, 5, h),
                          "unscored": int((~h).sum()), "clip_ids": ids,
                          "clip_positions": [(c + 0.5) / r.num_clips for c in ids],
                          "clips_used": clips_text(ids, r.num_clips)})
    cm = confusion_matrix(r.labels, pred, k)
    per_class = []
    for c in sorted(set(r.labels.tolist())):
        rows = r.labels == c
        wrong = pred[rows & (pred != c) & (pred >= 0)]
        other = None
        if wrong.size:
            ids, counts = np.unique(wrong, return_counts=True)
            best = int(ids[np.argmax(counts)])  # np.unique sorts ids: ties go to the smaller id
            other = {"id": best, "name": r.class_names[best], "count": int(counts.max())}
        per_class.append({"id": c, "name": r.class_names[c], "videos": int(rows.sum()), "correct": int(ok1[rows].sum()),
                          "top1": 100.0 * ok1[rows].sum() / rows.sum(), "top5": 100.0 * ok5[rows].sum() / rows.sum(),
                          "most_confused_with": other})
    per_class.sort(key=lambda row: (row["top1"], -row["videos"], row["id"]))
    failed_rows = sorted(set(np.flatnonzero(~r.valid.all(axis=1)).tolist()) | set(r.failures))
    one = curve[0]
    return {
        "headline": {
            "top1": 100.0 * ok1.sum() / n, "top5": 100.0 * ok5.sum() / n,
            "mean_class": mean_class_accuracy(r.labels, ok1, k),
            "one_view": {"clips": 1, "crops": 1, "views": 1, "label": "1x1", "top1": one["top1"], "top5": one["top5"],
                         "view": one_view_ranks(r)[1]},
            "full_grid": {key: curve[-1][key] for key in ("clips", "crops", "views", "label", "top1", "top5")},
            "videos": n, "classes": k, "classes_present": len(set(r.labels.tolist())), "views_per_video": v,
            "views_text": f"{r.num_clips} clips x {r.num_crops} crops = {v} views", "ensemble": r.ensemble,
            "videos_with_failed_views": int((~r.valid).any(axis=1).sum()), "failed_views": int((~r.valid).sum()),
            "unscored_videos": int((~has_view).sum()),
        },
        "views_curve": curve,
        "per_class": per_class,
        "confusion": {"rows": "true class", "columns": "predicted class", "classes": k,
                      "scored_videos": int(has_view.sum()),
                      "cells": [[t, p, int(cm[t, p])] for t in range(k) for p in range(k) if cm[t, p]]},
        "most_confused": [{"true_id": t, "true_name": r.class_names[t], "pred_id": p, "pred_name": r.class_names[p],
                           "count": c, "share": 100.0 * c / cm[t].sum()}
                          for t, p, c in most_confused_pairs(cm, top_pairs)],
        "failed_videos": [{"row": row, "path": r.paths[row], "label": int(r.labels[row]),
                           "class_name": r.class_names[r.labels[row]], "failed_views": int((~r.valid[row]).sum()),
                           "views": v, "scored": bool(r.valid[row].any()),
                           "reason": r.failures.get(row, "no reason recorded")} for row in failed_rows],
        "meta": r.meta,
    }


def _assert_close(actual, expected, where="report"):
    """Recursive equality, floats to 1e-9 relative; every key of ``expected`` must be present."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(expected), f"{where}: keys {sorted(set(actual) ^ set(expected))}"
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, (float, np.floating)):
        assert actual == pytest.approx(float(expected), rel=1e-9, abs=1e-12), where
    else:
        assert actual == expected and type(actual) is type(expected) or \
               isinstance(expected, (int, np.integer)) and actual == int(expected), where


class _WellFormed(HTMLParser):
    """Tracks open tags; collects img sources, links and text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.images, self.errors, self.text, self.refs = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self.refs += [value for key, value in attrs.items() if key in ("href", "src") and value]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse_html(path):
    parser = _WellFormed()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def _assert_png(data: bytes, max_side: int = 1400):
    assert data[:8] == PNG_SIGNATURE
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and 200 <= image.width <= max_side and 200 <= image.height <= max_side
    return image


def test_report_json_numbers_equal_the_metric_functions(built):
    results, report, out = built
    on_disk = _load_json(out / "report.json")
    assert on_disk == report
    expected = _expected(results)
    assert set(report) == set(expected) | {"report_version", "units", "files"}  # no unchecked section
    _assert_close({key: report[key] for key in expected}, expected)
    assert report["units"]["accuracy"] == "percent"
    assert report["files"] == {"html": "report.html", "views_curve": "views_curve.png",
                               "per_class": "per_class.png", "confusion": "confusion.png"}


def test_report_headline_agrees_with_headline_metrics(built):
    results, report, _ = built
    h, m = report["headline"], headline_metrics(results)
    assert (h["top1"], h["top5"], h["mean_class"]) == (m["top1"], m["top5"], m["mean_class"])
    assert (h["one_view"]["top1"], h["one_view"]["top5"]) == (m["one_view_top1"], m["one_view_top5"])
    assert h["full_grid"]["top1"] == h["top1"] and h["full_grid"]["top5"] == h["top5"]
    # the failure set-up of random_results: video 3 lost every view, video 5 two of them
    assert (h["videos"], h["unscored_videos"], h["videos_with_failed_views"], h["failed_views"]) == (60, 1, 2, 14)
    rows = {f["row"]: f for f in report["failed_videos"]}
    assert sorted(rows) == [3, 5] and rows[3]["scored"] is False and rows[5]["scored"] is True
    assert rows[3]["reason"] == "decord: cannot open <file>"
    # and the report's numbers are not trivial for this case
    assert 0 < h["one_view"]["top1"] < h["top1"] < 100


def test_per_class_is_worst_first(built):
    _, report, _ = built
    keys = [(c["top1"], -c["videos"], c["id"]) for c in report["per_class"]]
    assert keys == sorted(keys) and len(keys) == 8


def test_html_is_one_well_formed_self_contained_page(built):
    results, report, out = built
    page = _parse_html(out / "report.html")
    assert not page.errors and page.stack == [], (page.errors, page.stack)
    text = " ".join(page.text)
    h = report["headline"]
    for number in (h["top1"], h["top5"], h["mean_class"], h["one_view"]["top1"], h["one_view"]["top5"]):
        assert f"{number:.2f}%" in text
    for needle in ("4 clips x 3 crops = 12 views", "60 of 64", "runs/k400/checkpoints/epoch_030.pyth", "ab" * 32,
                   "decord", "temporally shuffled clips", "41.50%", "frames of each clip shuffled",
                   "decord: cannot open <file>", "class <0> & 'quoted'", "hand-made <b>test</b> run", "1057.2",
                   "videos / s", "global batch"):
        assert needle in text, needle
    raw = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>test</b>" not in raw and "<file>" not in raw and "<script" not in raw.lower()
    assert all(ref.startswith("data:image/png;base64,") for ref in page.refs), "external resource"
    assert len(page.images) == 3
    for attrs, name in zip(page.images, ("views_curve", "per_class", "confusion")):
        data = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
        _assert_png(data)
        assert data == (out / f"{name}.png").read_bytes()
        assert attrs["alt"]


def test_png_files_are_valid_and_readable_by_matplotlib(built):
    import matplotlib.image

    _, _, out = built
    for name in ("views_curve.png", "per_class.png", "confusion.png"):
        data = (out / name).read_bytes()
        _assert_png(data)
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and pixels.std() > 0  # not a blank image


def test_summary_text_gives_headline_and_location(built):
    _, report, out = built
    text = summary_text(report, out)
    h = report["headline"]
    assert f"top-1 {h['top1']:.2f}%" in text and f"mean-class {h['mean_class']:.2f}%" in text
    assert "2 videos had failed views" in text and str(out / "report.html") in text
    assert len(text.splitlines()) == 4


def test_curve_case_report_has_the_hand_numbers(tmp_path):
    report = build_report(curve_case(), tmp_path)
    assert [p["top1"] for p in report["views_curve"]] == [0.0, 100.0, 50.0, 50.0, 50.0, 100.0, 100.0, 100.0]
    # 4 clips: the curve's 1x1 is clip 3 of 4 (at 62.5%); no centre pass was made, and the report says so
    assert report["views_curve"][0]["clips_used"] == "clip 3 of 4 (at 62.5%)"
    assert report["views_curve"][1]["clips_used"] == "clips 2, 4 of 4 (at 37.5%, 87.5%)"
    assert report["views_curve"][3]["clip_positions"] == [0.125, 0.375, 0.625, 0.875]
    assert report["headline"]["one_view"] == {"clips": 1, "crops": 1, "views": 1, "label": "1x1",
                                              "top1": 0.0, "top5": 50.0, "view": "clip 3 of 4 (at 62.5%), not the "
                                              "centre clip x centre crop of the grid"}
    assert report["failed_videos"] == [] and report["most_confused"] == []
    assert "Every view of every video was decoded." in (tmp_path / "report.html").read_text()


def test_400_classes_render_a_bounded_readable_confusion_quickly(tmp_path):
    results = random_results(num_videos=800, num_classes=400, num_clips=2, num_crops=3, seed=1, signal=3.0)
    start = time.perf_counter()
    report = build_report(results, tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"build_report took {elapsed:.1f} s for 400 classes"
    image = _assert_png((tmp_path / "confusion.png").read_bytes(), max_side=1200)
    assert image.width * image.height <= 1200 * 1000
    cm = np.zeros((400, 400), np.int64)
    for t, p, c in report["confusion"]["cells"]:
        cm[t, p] = c
    shown = confused_classes(cm, MAX_CONFUSION_CLASSES)
    assert len(shown) == MAX_CONFUSION_CLASSES
    top = report["most_confused"][0]
    assert top["true_id"] in shown and top["pred_id"] in shown
    assert _assert_png((tmp_path / "per_class.png").read_bytes(), max_side=1200).height <= 1100  # 40 bars at most
    assert len(report["per_class"]) == report["headline"]["classes_present"]


def test_confusion_png_of_few_classes_shows_the_whole_matrix():
    cm = np.array([[3, 1, 0], [0, 2, 2], [1, 0, 4]])
    data = confusion_png(cm, ["a", "b", "c"])
    _assert_png(data)
