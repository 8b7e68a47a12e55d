"""``report.html``: one self-contained page rendered from the report dict of ``build.py``.

Figures are inlined as base64 ``data:image/png`` URIs, the CSS is inline, there is no script and
no external resource: the file can be mailed or opened from disk (the animations of the
TEST.VISUALIZE pictures are plain links to the files beside it). Every text that comes from
data (paths, class names, reasons, meta values) goes through ``html.escape``.
Named ``html_page`` rather than ``html`` so it never shadows the standard library's ``html``.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Any, Iterable, Mapping, Optional, Sequence

__all__ = ["render_html"]

# Known meta keys, in the order the contract asks for; the rest follow in their own order.
_COST_KEYS = ("model", "cost")
_PROVENANCE_KEYS = ("checkpoint", "config", "data", "software")
_KNOWN_META = (*_COST_KEYS, *_PROVENANCE_KEYS, "extra_results", "visualized")
_LABELS = {
    "arch": "architecture", "params_m": "parameters (M)", "gflops_per_view": "GFLOPs per view",
    "gflops_per_video": "GFLOPs per video", "input": "input (frames x H x W)", "wall_time_s": "wall time (s)",
    "videos_per_s": "videos / s", "views_per_s": "views / s", "device": "device", "global_batch": "global batch",
    "path": "path", "sha256": "sha256", "epoch": "epoch", "name": "name", "list": "data list",
    "videos_listed": "videos listed", "videos_present": "videos present", "decoder": "decoder",
    "short_side": "short side (px)", "crop": "crop (px)",
}
_MAX_FAILED_ROWS = 500  # the full list is in report.json

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.headline{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;
min-width:9em}.card .value{font-size:1.6em;font-weight:600}.card .what{color:#555;font-size:.9em}
.note{color:#555;font-size:.9em}.scroll{max-height:32em;overflow-y:auto;display:inline-block}
img{max-width:100%;height:auto;border:1px solid #eee}code{font-size:.9em;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _value(value: Any) -> str:
    """A meta value as escaped text; nested structures as compact JSON."""
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return _e(f"{value:.6g}")  # 1057.2 GFLOPs stays 1057.2, 0.1 + 0.2 prints 0.3
    if isinstance(value, (dict, list)):
        return f"<code>{_e(json.dumps(value, ensure_ascii=False))}</code>"
    return _e(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    """Cells of ``rows`` must already be escaped HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i < len(numeric) and numeric[i] else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_rows(prefix: str, value: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(_e(f"{prefix}: {_LABELS.get(k, k)}" if prefix else _LABELS.get(k, k)), _value(v))
            for k, v in value.items()]


def _image(images: Mapping[str, bytes], key: str, alt: str) -> str:
    if key not in images:
        return ""
    data = base64.b64encode(images[key]).decode("ascii")
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></p>'


def _card(value: str, what: str) -> str:
    return f'<div class="card"><div class="value">{value}</div><div class="what">{_e(what)}</div></div>'


def _headline(report: Mapping[str, Any]) -> str:
    h = report["headline"]
    full, one = h["full_grid"], h["one_view"]
    cards = [
        _card(_pct(h["top1"]), f"top-1, {full['label']} = {full['views']} views"),
        _card(_pct(h["top5"]), f"top-5, {full['label']} = {full['views']} views"),
        _card(_pct(h["mean_class"]), "mean-class accuracy (top-1)"),
        _card(_pct(one["top1"]), f"top-1, 1 view ({one.get('view', 'centre clip, centre crop')})"),
        _card(_pct(one["top5"]), "top-5, 1 view"),
        _card(_e(h["videos"]), "videos evaluated"),
        _card(_e(h["videos_with_failed_views"]), "videos with failed views"),
        _card(_e(h["unscored_videos"]), "videos without any decoded view (counted wrong)"),
    ]
    note = (f'<p class="note">Views: {_e(h["views_text"])}; softmax scores combined by {_e(h["ensemble"])}. '
            f'{_e(h["classes_present"])} of {_e(h["classes"])} classes have test videos. '
            f'Accuracies in percent over all {_e(h["videos"])} videos.</p>')
    return f'<h2>Headline</h2><div class="headline">{"".join(cards)}</div>{note}'


def _views_curve(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    rows = [(_e(p["label"]), _e(p.get("clips_used", "")), _e(p["views"]), _pct(p["top1"]), _pct(p["top5"]),
             _e(p["unscored"])) for p in report["views_curve"]]
    table = _table(["clips x crops", "clips used", "views", "top-1", "top-5", "videos without these views"], rows,
                   (False, False, True, True, True, True))
    return ("<h2>Accuracy vs views</h2><p class=\"note\">Clip k of K is centred in the k-th of K equal segments "
            "of the video (at (k + 0.5) / K of it); a subset of c clips takes clips floor((i + 0.5) x K / c). "
            "1 crop = the centre crop. The headline's 1 view is the centre clip x centre crop.</p>"
            f"{table}{_image(images, 'views_curve', 'top-1 accuracy against views per video')}")


def _per_class(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    rows = []
    for c in report["per_class"]:
        other = c["most_confused_with"]
        rows.append((_e(c["id"]), _e(c["name"]), _e(c["videos"]), _pct(c["top1"]), _pct(c["top5"]),
                     "" if other is None else _e(f"{other['name']} ({other['count']})")))
    table = _table(["id", "class", "videos", "top-1", "top-5", "most often predicted instead"], rows,
                   (True, False, True, True, True, False))
    return ("<h2>Per-class accuracy (worst first)</h2>"
            f"{_image(images, 'per_class', 'per-class top-1 accuracy, worst first')}"
            f'<div class="scroll">{table}</div>')


def _confusion(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    conf = report["confusion"]
    rows = [(_e(p["true_name"]), _e(p["pred_name"]), _e(p["count"]), _pct(p["share"]))
            for p in report["most_confused"]]
    pairs = _table(["true class", "predicted as", "videos", "share of the true class"], rows,
                   (False, False, True, True)) if rows else "<p>No video was confused with another class.</p>"
    return ("<h2>Most-confused pairs</h2>" + pairs
            + "<h2>Confusion matrix</h2>"
            + f'<p class="note">Rows: true class, columns: predicted class; {_e(conf["scored_videos"])} videos '
            f"with a prediction. The full matrix is in report.json (nonzero cells).</p>"
            + _image(images, "confusion", "confusion matrix"))


def _cost(meta: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    for key in _COST_KEYS:
        if isinstance(meta.get(key), dict):
            # the global batch is shown under provenance, with the views
            rows += _kv_rows("", {k: v for k, v in meta[key].items() if k != "global_batch"})
        elif key in meta:
            rows.append((_e(key), _value(meta[key])))
    if not rows:
        return "<h2>Cost</h2><p>Not recorded.</p>"
    return "<h2>Cost</h2>" + _table(["what", "value"], rows)


def _provenance(report: Mapping[str, Any]) -> str:
    meta, h = report["meta"], report["headline"]
    rows = [(_e("views"), _e(f"{h['views_text']}, ensemble {h['ensemble']}")),
            (_e("videos evaluated"), _e(h["videos"]))]
    data = meta.get("data")
    if isinstance(data, dict) and "videos_present" in data and "videos_listed" in data:
        rows.append((_e("data: present of listed"), _e(f"{data['videos_present']} of {data['videos_listed']}")))
    batch = meta.get("cost", {}).get("global_batch") if isinstance(meta.get("cost"), dict) else None
    if batch is not None:
        rows.append((_e("global batch"), _value(batch)))
    for key in _PROVENANCE_KEYS:
        if isinstance(meta.get(key), dict):
            rows += _kv_rows(key, meta[key])
        elif key in meta:
            rows.append((_e(key), _value(meta[key])))
    return "<h2>Provenance</h2>" + _table(["what", "value"], rows)


def _extra(meta: Mapping[str, Any]) -> str:
    extra = meta.get("extra_results")
    if not extra:
        return ""
    if not isinstance(extra, dict):
        return "<h2>Extra results</h2><p>" + _value(extra) + "</p>"
    rows = []
    for name, value in extra.items():
        if isinstance(value, dict):
            top1 = value.get("top1")
            rows.append((_e(name), _pct(top1) if isinstance(top1, (int, float)) else _value(top1),
                         _e(value.get("note", ""))))
        else:
            rows.append((_e(name), _value(value), ""))
    return "<h2>Extra results</h2>" + _table(["experiment", "top-1", "note"], rows, (False, True, False))


def _visualized(meta: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """The TEST.VISUALIZE pictures (``meta.visualized``: rule, videos), each PNG inlined."""
    shown = meta.get("visualized")
    if not isinstance(shown, dict):
        return ""
    parts = [f"<h2>Most confused videos ({len(shown.get('videos', []))})</h2>",
             f'<p class="note">{_e(shown.get("rule", ""))}. Each picture has one row per temporal slice: the frame, '
             "Grad-CAM, and with semantic tokens the image tokens coloured by the semantic token that attends to them "
             "most, then some semantic tokens' attention (white box: the region the token was pooled from).</p>"]
    if shown.get("error"):
        parts.append(f"<p>The pictures could not be drawn: {_e(shown['error'])}</p>")
    for i, v in enumerate(shown.get("videos", [])):
        head = (f"<code>{_e(v.get('path'))}</code>: true class {_e(v.get('true_name'))} "
                f"({_pct(100 * v['true_score'] if isinstance(v.get('true_score'), (int, float)) else None)} "
                "over its views)")
        if v.get("error"):
            parts.append(f"<p>{head}; could not be decoded: {_e(v['error'])}</p>")
            continue
        score = v.get("clip_predicted_score")
        head += (f"; the drawn clip predicts {_e(v.get('clip_predicted'))} "
                 f"({_pct(100 * score if isinstance(score, (int, float)) else None)})")
        link = f' (<a href="{_e(v["animation"])}">animation</a>)' if v.get("animation") else ""
        picture = _image(images, f"visualized/{i}", f"maps of {v.get('path')}") or \
            f'<p class="note">{_e(v.get("png"))} is not beside this report.</p>'
        parts.append(f"<p>{head}{link}</p>{picture}")
    return "".join(parts)


def _other_meta(meta: Mapping[str, Any]) -> str:
    rest = {k: v for k, v in meta.items() if k not in _KNOWN_META}
    if not rest:
        return ""
    rows = []
    for key, value in rest.items():
        if isinstance(value, dict):
            rows += _kv_rows(key, value)
        else:
            rows.append((_e(key), _value(value)))
    return "<h2>Other metadata</h2>" + _table(["what", "value"], rows)


def _failed(report: Mapping[str, Any]) -> str:
    failed = report["failed_videos"]
    if not failed:
        return "<h2>Failed videos</h2><p>Every view of every video was decoded.</p>"
    rows = [(_e(f["row"]), f"<code>{_e(f['path'])}</code>", _e(f["class_name"]),
             _e(f"{f['failed_views']} of {f['views']}"), "no (counted wrong)" if not f["scored"] else "yes",
             _e(f["reason"])) for f in failed[:_MAX_FAILED_ROWS]]
    more = (f'<p class="note">{len(failed) - _MAX_FAILED_ROWS} more in report.json.</p>'
            if len(failed) > _MAX_FAILED_ROWS else "")
    return (f"<h2>Failed videos ({len(failed)})</h2>"
            + _table(["row", "path", "class", "failed views", "scored", "decoder's reason"], rows,
                     (True, False, False, True, False, False)) + more)


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes], title: str = "Evaluation report") -> str:
    """The whole page for ``report`` (the dict of ``build_report``) with ``images`` (name -> PNG
    bytes: ``views_curve``, ``per_class``, ``confusion``, ``visualized/<i>``; missing ones are skipped)."""
    meta = report["meta"]
    subtitle = []
    if isinstance(meta.get("model"), dict) and "arch" in meta["model"]:
        subtitle.append(f"model {meta['model']['arch']}")
    if isinstance(meta.get("checkpoint"), dict) and "path" in meta["checkpoint"]:
        subtitle.append(f"checkpoint {meta['checkpoint']['path']}")
    if isinstance(meta.get("data"), dict) and "list" in meta["data"]:
        subtitle.append(f"data {meta['data']['list']}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">{_e("; ".join(subtitle))}</p>' if subtitle else "",
        _headline(report), _views_curve(report, images), _per_class(report, images), _confusion(report, images),
        _cost(meta), _provenance(report), _extra(meta), _visualized(meta, images), _other_meta(meta),
        _failed(report),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
