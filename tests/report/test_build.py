"""build_report: report.json numbers, the self-contained HTML page, the PNG figures."""
import base64
import io
import json
import time
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from stvit_video.report import EvalResults, build_report, headline_metrics, summary_text
from stvit_video.report.figures import MAX_CONFUSION_CLASSES, confusion_png
from stvit_video.report.metrics import confused_classes
from tests.helpers.results import curve_case, log_probs, random_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


def _no_constants(name):
    raise AssertionError(f"report.json holds {name}")


def _load_json(path):
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


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


def _hand_results() -> EvalResults:
    """5 videos, 3 classes (cat 0, dog 1, owl 2), 2 clips x 1 crop, and a centre pass.

    Each view's logits are log(p) of the row p below, so its softmax is p; failed views hold NaN.

        video  label  clip 1 (at 25%)   clip 2 (at 75%)   centre view       note
        0      cat    .6 .3 .1          .7 .2 .1          .8 .1 .1
        1      dog    .2 .7 .1          .6 .3 .1          .5 .4 .1
        2      owl    .5 .1 .4          failed            .1 .2 .7          decoder reason recorded
        3      owl    failed            failed            failed            no reason recorded
        4      dog    .4 .4 .2          .4 .4 .2          .1 .7 .2          cat and dog tie
    """
    logits = np.full((5, 2, 3), np.nan, np.float32)
    logits[0] = log_probs([0.6, 0.3, 0.1], [0.7, 0.2, 0.1])
    logits[1] = log_probs([0.2, 0.7, 0.1], [0.6, 0.3, 0.1])
    logits[2, 0] = log_probs([0.5, 0.1, 0.4])[0]
    logits[4] = log_probs([0.4, 0.4, 0.2], [0.4, 0.4, 0.2])
    valid = np.array([[True, True], [True, True], [True, False], [False, False], [True, True]])
    centre = np.full((5, 3), np.nan, np.float32)
    centre[[0, 1, 2, 4]] = log_probs([0.8, 0.1, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.1, 0.7, 0.2])
    return EvalResults(logits=logits, valid=valid, labels=np.array([0, 1, 2, 2, 1]),
                       paths=[f"v{i}.mp4" for i in range(5)], class_names=["cat", "dog", "owl"],
                       num_clips=2, num_crops=1, failures={2: "decord: clip 2 unreadable"},
                       meta={"notes": "hand case"}, centre_logits=centre,
                       centre_valid=np.array([True, True, True, False, True]))


def test_report_json_holds_the_hand_computed_numbers(tmp_path):
    report = build_report(_hand_results(), tmp_path)
    assert _load_json(tmp_path / "report.json") == report
    assert set(report) == {"report_version", "units", "headline", "views_curve", "per_class", "confusion",
                           "most_confused", "failed_videos", "meta", "files"}
    # Summed softmax of the valid views (all of them):
    #   video 0: .6+.7, .3+.2, .1+.1 = 1.3 .5 .2  -> cat, right
    #   video 1: .2+.6, .7+.3, .1+.1 = .8 1.0 .2  -> dog, right
    #   video 2: clip 1 only         = .5 .1 .4   -> cat, wrong (owl second: in the top 5)
    #   video 3: no valid view       -> no prediction, wrong for every k
    #   video 4: .8 .8 .4: cat and dog tie, the smaller id (cat) ranks first -> cat, wrong (dog second)
    # top-1 2 of 5 = 40%; top-5 (only 3 classes): every scored video, 4 of 5 = 80%
    # mean-class: cat 1/1, dog 1/2, owl 0/2 -> (100 + 50 + 0) / 3 = 50%
    # 1 view, the centre pass: cat right, dog (.5 .4 .1) wrong but second, owl right, video 3 failed, dog right
    #   -> top-1 3 of 5 = 60%, top-5 4 of 5 = 80%
    assert report["headline"] == {
        "top1": 40.0, "top5": 80.0, "mean_class": 50.0,
        "one_view": {"clips": 1, "crops": 1, "views": 1, "label": "1x1", "top1": 60.0, "top5": 80.0,
                     "view": "the centre clip x centre crop, evaluated in a separate pass"},
        "full_grid": {"clips": 2, "crops": 1, "views": 2, "label": "2x1", "top1": 40.0, "top5": 80.0},
        "videos": 5, "classes": 3, "classes_present": 3, "views_per_video": 2,
        "views_text": "2 clips x 1 crops = 2 views", "ensemble": "sum",
        "videos_with_failed_views": 2, "failed_views": 3, "unscored_videos": 1,  # failed: video 2 one, video 3 two
    }
    # 1x1: clip floor(0.5 * 2 / 1) = 1, the second of 2, centred at (1 + 0.5) / 2 = 75% of the video:
    #   video 0 .7 .2 .1 right; video 1 .6 .3 .1 wrong (dog second); videos 2 and 3 failed there;
    #   video 4 .4 .4 .2 tie -> cat, wrong (dog second)  -> top-1 1 of 5 = 20%, top-5 3 of 5 = 60%
    # 2x1: the full grid above
    assert report["views_curve"] == [
        {"clips": 1, "crops": 1, "views": 1, "label": "1x1", "top1": 20.0, "top5": 60.0, "unscored": 2,
         "clip_ids": [1], "clip_positions": [0.75], "clips_used": "clip 2 of 2 (at 75%)"},
        {"clips": 2, "crops": 1, "views": 2, "label": "2x1", "top1": 40.0, "top5": 80.0, "unscored": 1,
         "clip_ids": [0, 1], "clip_positions": [0.25, 0.75], "clips_used": "all 2 clips"},
    ]
    # worst first: owl 0 of 2 (top-5: video 2 yes, video 3 no), dog 1 of 2 (video 4 -> cat), cat 1 of 1
    assert report["per_class"] == [
        {"id": 2, "name": "owl", "videos": 2, "correct": 0, "top1": 0.0, "top5": 50.0,
         "most_confused_with": {"id": 0, "name": "cat", "count": 1}},
        {"id": 1, "name": "dog", "videos": 2, "correct": 1, "top1": 50.0, "top5": 100.0,
         "most_confused_with": {"id": 0, "name": "cat", "count": 1}},
        {"id": 0, "name": "cat", "videos": 1, "correct": 1, "top1": 100.0, "top5": 100.0, "most_confused_with": None},
    ]
    # (true, predicted): cat->cat (0), dog->dog (1), owl->cat (2), dog->cat (4); video 3 has no prediction
    assert report["confusion"] == {"rows": "true class", "columns": "predicted class", "classes": 3,
                                   "scored_videos": 4, "cells": [[0, 0, 1], [1, 0, 1], [1, 1, 1], [2, 0, 1]]}
    # two off-diagonal cells of 1, ordered by true id; share of the scored videos of the true class:
    # dog 1 of 2 = 50%, owl 1 of 1 (video 3 unscored) = 100%
    assert report["most_confused"] == [
        {"true_id": 1, "true_name": "dog", "pred_id": 0, "pred_name": "cat", "count": 1, "share": 50.0},
        {"true_id": 2, "true_name": "owl", "pred_id": 0, "pred_name": "cat", "count": 1, "share": 100.0},
    ]
    assert report["failed_videos"] == [
        {"row": 2, "path": "v2.mp4", "label": 2, "class_name": "owl", "failed_views": 1, "views": 2, "scored": True,
         "reason": "decord: clip 2 unreadable"},
        {"row": 3, "path": "v3.mp4", "label": 2, "class_name": "owl", "failed_views": 2, "views": 2, "scored": False,
         "reason": "no reason recorded"},
    ]
    assert report["meta"] == {"notes": "hand case"}
    assert report["units"]["accuracy"] == "percent"
    assert report["files"] == {"html": "report.html", "views_curve": "views_curve.png",
                               "per_class": "per_class.png", "confusion": "confusion.png"}


def test_report_json_on_disk_is_the_returned_report(built):
    results, report, out = built
    assert _load_json(out / "report.json") == report
    assert report["meta"] == results.meta
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
