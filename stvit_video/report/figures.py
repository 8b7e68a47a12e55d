"""PNG figures of the report: views curve, per-class accuracy, confusion matrix.

Drawn on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through pyplot, so no
global backend or figure state changes for other users of matplotlib in the process. matplotlib
is imported inside the functions: ``import stvit_video.report`` stays light.
Every function returns the PNG bytes; sizes are bounded whatever the number of classes.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Sequence

import numpy as np

from stvit_video.report.metrics import confused_classes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from stvit_video.report.metrics import CurvePoint

__all__ = ["MAX_CONFUSION_CLASSES", "MAX_PER_CLASS_BARS", "confusion_png", "figure_png", "new_figure", "per_class_png",
           "short_label", "views_curve_png"]

DPI = 100
MAX_PER_CLASS_BARS = 40  # more bars than this are unreadable on one page
MAX_CONFUSION_CLASSES = 30  # the block of the confusion matrix drawn when K is larger
_LABEL_CHARS = 24  # class names are cut to this many characters on axes


def new_figure(width_in: float, height_in: float) -> "Figure":
    """An Agg-backed matplotlib figure of that size at the report's DPI (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: "Figure") -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def short_label(name: str) -> str:
    """A class name cut to the axes' label length, with an ellipsis."""
    return name if len(name) <= _LABEL_CHARS else name[:_LABEL_CHARS - 1] + "\u2026"


def views_curve_png(points: Sequence["CurvePoint"], title: str = "Top-1 accuracy vs views") -> bytes:
    """Top-1 (percent) against the number of views, one line per crops setting, each point
    labelled ``clips x crops`` (e.g. "1x1", "4x3")."""
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for index, crops in enumerate(sorted({p.crops for p in points})):
        line = [p for p in points if p.crops == crops]
        xs, ys = [p.views for p in line], [p.top1 for p in line]
        ax.plot(xs, ys, marker="o", label=f"{crops} crop{'s' if crops > 1 else ''} per clip")
        # labels of the two lines on opposite sides: "3x1" and "1x3" share x = 3 views
        offset = (5, -12) if index == 0 else (-6, 6)
        for p in line:
            ax.annotate(p.label, (p.views, p.top1), textcoords="offset points", xytext=offset, fontsize=8,
                        ha="left" if index == 0 else "right")
    ax.set_xticks(sorted({p.views for p in points}))
    ax.set_xlabel("views per video (clips x crops)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.15)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def per_class_png(names: Sequence[str], accuracy: Sequence[float], videos: Sequence[int],
                  max_bars: int = MAX_PER_CLASS_BARS) -> bytes:
    """Horizontal bars of per-class top-1 (percent), in the given order (worst first), at most
    ``max_bars`` of them; each bar is annotated with the class's video count."""
    shown = min(len(names), max_bars)
    fig = new_figure(8.0, 1.4 + 0.22 * max(shown, 3))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(shown)
    ax.barh(y, list(accuracy[:shown]), color="#4c72b0")
    ax.set_yticks(y, [short_label(n) for n in names[:shown]], fontsize=8)
    ax.invert_yaxis()  # worst class at the top
    for i in range(shown):
        ax.annotate(f"{accuracy[i]:.0f}% of {videos[i]}", (accuracy[i], i), textcoords="offset points",
                    xytext=(3, -3), fontsize=7)
    ax.set_xlim(0, 115)
    ax.set_xlabel("top-1 accuracy (%)")
    more = f" ({shown} worst of {len(names)} classes)" if shown < len(names) else ""
    ax.set_title(f"Per-class top-1 accuracy, worst first{more}", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def confusion_png(confusion: np.ndarray, class_names: Sequence[str],
                  max_classes: int = MAX_CONFUSION_CLASSES) -> bytes:
    """The confusion matrix (rows = true class), whole when K <= ``max_classes``, otherwise the
    block of the ``max_classes`` classes most involved in confusions. Colour = share of the true
    class's scored videos (row-normalised over all K columns); cells show counts."""
    cm = np.asarray(confusion)
    k = cm.shape[0]
    ids = confused_classes(cm, max_classes)
    block = cm[np.ix_(ids, ids)]
    rows = cm.sum(axis=1)[ids].astype(np.float64)
    share = block / np.maximum(rows, 1)[:, None]
    n = len(ids)
    side = min(9.0, 3.0 + 0.2 * n)
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    labels = [short_label(class_names[i]) for i in ids]
    small = n <= 12  # few classes: room for larger text
    ax.set_xticks(np.arange(n), labels, rotation=90, fontsize=8 if small else 7)
    ax.set_yticks(np.arange(n), labels, fontsize=8 if small else 7)
    for i, j in zip(*np.nonzero(block)):
        ax.text(j, i, str(block[i, j]), ha="center", va="center", fontsize=9 if small else 6,
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    what = f"{n} most-confused of {k} classes" if n < k else f"{k} classes"
    ax.set_title(f"Confusion matrix ({what})", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="share of the true class")
    fig.tight_layout()
    return figure_png(fig)
