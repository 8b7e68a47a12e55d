"""The picture of a prediction timeline: the top classes of a long video over time.

One panel per video: for each of its most frequent top classes, the class's score in every
time window (a point at the window's centre; a gap where the class is not among that window's
top classes), and a band under the curves coloured by each window's top-1 class around its
centre. Drawn like :mod:`stvit_video.report.figures` (explicit Agg canvas, no pyplot), returned
as PNG bytes.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from stvit_video.report.figures import figure_png, new_figure, short_label

__all__ = ["MAX_TIMELINE_CLASSES", "MAX_TIMELINE_VIDEOS", "TimelineWindow", "timeline_png"]

MAX_TIMELINE_CLASSES = 6  # lines per panel; more are unreadable
MAX_TIMELINE_VIDEOS = 12  # panels per picture (the first videos, in order)


class TimelineWindow(NamedTuple):
    """One window of one video: ``[start, end)`` seconds and its top classes ``(name, score)``,
    best first (an empty tuple: the window could not be decoded)."""

    video: str
    start: float
    end: float
    top: tuple[tuple[str, float], ...]


def _panel_classes(windows: Sequence[TimelineWindow], limit: int) -> list[str]:
    """The classes a panel draws: top-1 classes first (by how many windows they win), then the
    others by total score, at most ``limit``."""
    wins: dict[str, int] = {}
    total: dict[str, float] = {}
    for w in windows:
        if w.top:
            wins[w.top[0][0]] = wins.get(w.top[0][0], 0) + 1
        for name, score in w.top:
            total[name] = total.get(name, 0.0) + score
    return sorted(total, key=lambda n: (-wins.get(n, 0), -total[n]))[:limit]


def timeline_png(windows: Sequence[TimelineWindow], *, max_classes: int = MAX_TIMELINE_CLASSES,
                 max_videos: int = MAX_TIMELINE_VIDEOS) -> bytes:
    """Scores of the top classes over time, one panel per video (the first ``max_videos``)."""
    videos = list(dict.fromkeys(w.video for w in windows))[:max_videos]
    if not videos:
        raise ValueError("timeline: no windows to draw")
    fig = new_figure(10.5, 0.6 + 2.6 * len(videos))
    colours = [f"C{i}" for i in range(10)]
    for row, video in enumerate(videos):
        ax = fig.add_subplot(len(videos), 1, row + 1)
        own = [w for w in windows if w.video == video]
        classes = _panel_classes(own, max_classes)
        centres = np.array([(w.start + w.end) / 2 for w in own])
        for index, name in enumerate(classes):
            scores = np.array([dict(w.top).get(name, np.nan) for w in own], dtype=np.float64)
            ax.plot(centres, 100 * scores, marker="o", markersize=3, color=colours[index % 10], label=short_label(name))
        # the band: each window's winner, from halfway to the previous window's centre to halfway
        # to the next one's (overlapping windows would otherwise paint over each other)
        edges = np.concatenate([[own[0].start], (centres[1:] + centres[:-1]) / 2, [own[-1].end]])
        for w, left, right in zip(own, edges[:-1], edges[1:]):
            if w.top and w.top[0][0] in classes:
                ax.axvspan(left, right, ymin=0.0, ymax=0.05, color=colours[classes.index(w.top[0][0]) % 10],
                           alpha=0.6, linewidth=0)
        ax.set_xlim(min(w.start for w in own), max(w.end for w in own))
        ax.set_ylim(-6, 105)
        ax.set_ylabel("score (%)")
        ax.set_title(short_label(video.rsplit("/", 1)[-1]) if len(video) > 24 else video, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)  # beside: never over a point
    ax.set_xlabel("time (s): window centres; band = the top-1 class of each window")
    fig.tight_layout()
    return figure_png(fig)
