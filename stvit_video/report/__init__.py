"""Multi-view evaluation results and their report (``report.json``, ``report.html``, PNGs).

The tester fills a :class:`EvalResults` (per-view logits, validity, labels, paths, meta), saves
it and calls :func:`build_report`; ``python -m stvit_video.report RESULTS --out DIR`` rebuilds
the report from the saved file. Aggregation and metrics live in :mod:`.metrics`, the one
implementation both use. Importing this package needs numpy only (matplotlib is imported when
figures are drawn, torch when ``.pt`` files are read or written).
"""
from stvit_video.report.build import build_report, report_dict, summary_text
from stvit_video.report.metrics import (
    CurvePoint, aggregate, confusion_matrix, headline_metrics, label_ranks, mean_class_accuracy,
    most_confused_pairs, per_class_counts, predictions, select_views, softmax, topk_accuracy, topk_correct,
    views_curve,
)
from stvit_video.report.results import ResultsError, EvalResults

__all__ = [
    "CurvePoint", "ResultsError", "EvalResults", "aggregate", "build_report", "confusion_matrix",
    "headline_metrics", "label_ranks", "mean_class_accuracy", "most_confused_pairs", "per_class_counts",
    "predictions", "report_dict", "select_views", "softmax", "summary_text", "topk_accuracy", "topk_correct",
    "views_curve",
]
