"""Multi-view aggregation and accuracy metrics: the one implementation used by tester and report.

Numpy only. Accuracies are in percent (0-100) everywhere.

Aggregation: every view's logits go through a softmax over the K classes (in float64); a
video's score is the sum (or the elementwise max) of the softmax scores of its VALID views.
A video without a valid view has no prediction (-1) and counts as wrong for every k.

Ranking and ties: the label's rank is the number of classes that score higher, plus those that
score the same and have a smaller id (a stable sort of the scores, high first). Top-k correct
= rank < k, so top-1 correct = ``argmax == label`` (``argmax`` keeps the first maximum).

Views: view ``v`` = clip ``v // num_crops``, crop ``v % num_crops``. A ``c x r`` subset takes the
clips ``floor((i + 0.5) * num_clips / c)``, i < c (spread evenly, centred) and, for r = 1, the
centre crop ``num_crops // 2`` (all crops for r = num_crops). The tester's clip ``k`` of ``K`` is
centred in the k-th of K equal segments of the video (at ``(k + 0.5) / K`` of it,
:func:`clip_position`), so a subset is named by the clips it uses: for K = 4 the ``1x1`` subset
is clip 3 of 4, at 62.5% of the video, not the centre clip. The 1-view headline is the true
centre clip x centre crop: the tester evaluates it in a separate pass when K is even
(``EvalResults.centre_logits``); for odd K it is the grid's middle clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np

from stvit_video.utils.view_grid import ENSEMBLE_METHODS, centre_crop, view_index

if TYPE_CHECKING:
    from stvit_video.report.results import EvalResults

__all__ = [
    "CurvePoint", "NO_RANK", "aggregate", "clip_position", "clips_text", "confusion_matrix", "confused_classes",
    "headline_metrics", "label_ranks", "mean_class_accuracy", "most_confused_pairs", "one_view_ranks",
    "per_class_counts", "predictions", "select_clips", "select_views", "softmax", "topk_accuracy", "topk_correct",
    "views_curve",
]

# Rank of the label of a video without a valid view: larger than any k.
NO_RANK = int(np.iinfo(np.int64).max)
# Videos per softmax chunk: bounds the float64 (chunk, V, K) temporary (~40 MB for 12 x 400).
_CHUNK = 1024


def _percent(mask: np.ndarray) -> float:
    """Share of True in ``mask``, in percent (count first, so 109 of 200 is exactly 54.5)."""
    return 100.0 * int(np.count_nonzero(mask)) / mask.size


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax in float64 along ``axis`` (max-subtracted, so large logits do not overflow)."""
    x = np.array(logits, dtype=np.float64)  # a copy: the steps below work in place
    x -= x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x


def _check_views(logits: np.ndarray, valid: np.ndarray, ensemble: str) -> tuple[np.ndarray, np.ndarray]:
    if ensemble not in ENSEMBLE_METHODS:
        raise ValueError(f"ensemble must be one of {ENSEMBLE_METHODS}, got {ensemble!r}")
    logits = np.asarray(logits)
    valid = np.asarray(valid, dtype=bool)
    if logits.ndim != 3 or valid.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (N, V, K) and valid (N, V), got {logits.shape} and {valid.shape}")
    return logits, valid


def _chunks(logits: np.ndarray, valid: np.ndarray, ensemble: str,
            subsets: Sequence[Optional[np.ndarray]]) -> Iterator[tuple[slice, list[tuple[np.ndarray, np.ndarray]]]]:
    """Aggregate ``_CHUNK`` videos at a time: yields (rows, [(scores, has_view) per view subset]).

    The softmax of each view is computed once per chunk and shared by all subsets (the views
    curve needs 2 x num_clips of them); ``None`` in ``subsets`` means all views.
    """
    n = logits.shape[0]
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        ok_all = valid[rows]
        # Failed views may hold garbage (even NaN): zero their logits before the softmax and
        # their scores after it. Valid scores are >= 0, so a zeroed view changes neither a sum
        # nor a max, and a video without a valid view gets all zeros.
        probs_all = softmax(np.where(ok_all[:, :, None], logits[rows], 0))
        probs_all *= ok_all[:, :, None]
        out = []
        for views in subsets:
            probs, ok = (probs_all, ok_all) if views is None else (probs_all[:, views], ok_all[:, views])
            scores = probs.sum(axis=1) if ensemble == "sum" else probs.max(axis=1)
            out.append((scores, ok.any(axis=1)))
        yield rows, out


def aggregate(logits: np.ndarray, valid: np.ndarray, ensemble: str = "sum",
              views: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Combine the softmax scores of each video's valid views.

    Args:
        logits: (N, V, K) per-view logits.
        valid: (N, V) bool; invalid views are ignored whatever their logits hold.
        ensemble: "sum" or "max".
        views: optional view indices to use (see :func:`select_views`); default all V.
    Returns:
        scores: (N, K) float64; all zeros for a video without a valid view.
        has_view: (N,) bool, True where at least one (selected) view was valid.
    """
    logits, valid = _check_views(logits, valid, ensemble)
    subset = None if views is None else np.asarray(views, dtype=np.int64)
    n, _, k = logits.shape
    scores = np.zeros((n, k), dtype=np.float64)
    has_view = np.zeros(n, dtype=bool)
    for rows, [(chunk_scores, chunk_has)] in _chunks(logits, valid, ensemble, [subset]):
        scores[rows], has_view[rows] = chunk_scores, chunk_has
    return scores, has_view


def _subset_ranks(logits: np.ndarray, valid: np.ndarray, labels: np.ndarray, ensemble: str,
                  subsets: Sequence[Optional[np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(label ranks (N,), has_view (N,)) of each view subset, without keeping (N, K) scores."""
    logits, valid = _check_views(logits, valid, ensemble)
    labels = np.asarray(labels, dtype=np.int64)
    n = logits.shape[0]
    out = [(np.empty(n, dtype=np.int64), np.empty(n, dtype=bool)) for _ in subsets]
    for rows, results in _chunks(logits, valid, ensemble, subsets):
        for (ranks, has_view), (scores, has) in zip(out, results):
            ranks[rows] = label_ranks(scores, labels[rows], has)
            has_view[rows] = has
    return out


def label_ranks(scores: np.ndarray, labels: np.ndarray, has_view: Optional[np.ndarray] = None) -> np.ndarray:
    """(N,) int64 rank of each video's label among its (N, K) scores, 0 = best (ties: smaller id
    first); :data:`NO_RANK` for a video without a valid view, so ``rank < k`` is False for every k
    (even k > K, where every scored video is right)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = scores.shape
    own = scores[np.arange(n), labels][:, None]
    higher = (scores > own).sum(axis=1)
    tied_before = ((scores == own) & (np.arange(k)[None, :] < labels[:, None])).sum(axis=1)
    ranks = (higher + tied_before).astype(np.int64)
    if has_view is not None:
        ranks[~np.asarray(has_view, dtype=bool)] = NO_RANK
    return ranks


def predictions(scores: np.ndarray, has_view: Optional[np.ndarray] = None) -> np.ndarray:
    """(N,) int64 top-1 class of each video (first maximum); -1 for a video without a valid view."""
    pred = np.asarray(scores).argmax(axis=1).astype(np.int64)
    if has_view is not None:
        pred[~np.asarray(has_view, dtype=bool)] = -1
    return pred


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int,
                 has_view: Optional[np.ndarray] = None) -> np.ndarray:
    """(N,) bool: the label is among the ``k`` highest scores (False without a valid view)."""
    return label_ranks(scores, labels, has_view) < k


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int, has_view: Optional[np.ndarray] = None) -> float:
    """Top-k accuracy in percent over all N videos (videos without a valid view are wrong)."""
    return _percent(topk_correct(scores, labels, k, has_view))


def per_class_counts(labels: np.ndarray, correct: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Videos and correct videos per true class: two (K,) int64 arrays."""
    labels = np.asarray(labels, dtype=np.int64)
    total = np.bincount(labels, minlength=num_classes).astype(np.int64)
    right = np.bincount(labels, weights=np.asarray(correct, dtype=np.float64), minlength=num_classes)
    return total, np.rint(right).astype(np.int64)


def mean_class_accuracy(labels: np.ndarray, correct: np.ndarray, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of the per-class recall (percent).

    ``correct`` is the (N,) top-1 correctness of each video (e.g. ``topk_correct(..., 1, ...)``).
    """
    total, right = per_class_counts(labels, correct, num_classes)
    present = total > 0
    return 100.0 * float(np.mean(right[present] / total[present]))


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts, row = true class, column = predicted class. Videos without a
    prediction (pred -1) are left out, so row sums count the scored videos of each class."""
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    scored = pred >= 0
    flat = labels[scored] * num_classes + pred[scored]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.int64)


def most_confused_pairs(confusion: np.ndarray, top: int = 20) -> list[tuple[int, int, int]]:
    """The ``top`` largest off-diagonal cells as (true, predicted, count), largest first, ties by
    (true, predicted); zero cells are never listed."""
    cm = np.asarray(confusion)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    true, pred = np.nonzero(off)
    counts = off[true, pred]
    order = np.lexsort((pred, true, -counts))[:top]
    return [(int(true[i]), int(pred[i]), int(counts[i])) for i in order]


def confused_classes(confusion: np.ndarray, max_classes: int) -> np.ndarray:
    """Ids of the (at most) ``max_classes`` classes most involved in confusions (off-diagonal
    row + column sum, ties by id), sorted by id: the block of the matrix worth showing."""
    cm = np.asarray(confusion)
    k = cm.shape[0]
    if k <= max_classes:
        return np.arange(k)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    weight = off.sum(axis=0) + off.sum(axis=1)
    chosen = np.lexsort((np.arange(k), -weight))[:max_classes]
    return np.sort(chosen)


def select_clips(num_clips: int, clips: int) -> np.ndarray:
    """The ``clips`` clip ids (of ``num_clips``) a subset uses: ``floor((i + 0.5) * num_clips / clips)``."""
    if not 1 <= clips <= num_clips:
        raise ValueError(f"clips must be in [1, {num_clips}], got {clips}")
    # in integers, so no rounding can move a clip
    return (2 * np.arange(clips, dtype=np.int64) + 1) * num_clips // (2 * clips)


def clip_position(clip: int, num_clips: int) -> float:
    """Where clip ``clip`` of ``num_clips`` sits in the video: the centre of its segment, ``(k + 0.5) / K``
    of the range of clip starts (0.5 = the centre clip)."""
    return (clip + 0.5) / num_clips


def clips_text(clip_ids: Sequence[int], num_clips: int) -> str:
    """``"clip 3 of 4 (at 62.5%)"``, ``"clips 1, 3 of 4 (at 12.5%, 62.5%)"``, ``"all 4 clips"`` (1-based)."""
    ids = [int(c) for c in clip_ids]
    if len(ids) == num_clips:
        return f"all {num_clips} clip{'s' if num_clips > 1 else ''}"
    where = ", ".join(f"{100 * clip_position(c, num_clips):g}%" for c in ids)
    return f"clip{'s' if len(ids) > 1 else ''} {', '.join(str(c + 1) for c in ids)} of {num_clips} (at {where})"


def select_views(num_clips: int, num_crops: int, clips: int, crops: int) -> np.ndarray:
    """View indices of a ``clips x crops`` subset of a ``num_clips x num_crops`` grid.

    Clips :func:`select_clips`; crops: all when ``crops == num_crops``, the centre crop
    ``num_crops // 2`` when ``crops == 1``. Returns (clips * crops,) int64, clip-major
    (view = clip * num_crops + crop).
    """
    clip_ids = select_clips(num_clips, clips)
    if crops == num_crops:
        crop_ids = np.arange(num_crops)
    elif crops == 1:
        crop_ids = np.array([centre_crop(num_crops)])
    else:
        raise ValueError(f"crops must be 1 or num_crops={num_crops}, got {crops}")
    return view_index(clip_ids[:, None], crop_ids[None, :], num_crops).ravel()


@dataclass(frozen=True)
class CurvePoint:
    """Accuracy of a ``clips x crops`` subset of the views (percent)."""

    clips: int
    crops: int
    top1: float
    top5: float
    unscored: int  # videos with none of these views decoded (counted wrong)
    clip_ids: tuple[int, ...] = ()  # 0-based clips of the grid this subset uses

    @property
    def views(self) -> int:
        return self.clips * self.crops

    @property
    def label(self) -> str:
        return f"{self.clips}x{self.crops}"


def views_curve(logits: np.ndarray, valid: np.ndarray, labels: np.ndarray, num_clips: int, num_crops: int,
                ensemble: str = "sum") -> list[CurvePoint]:
    """Top-1 / top-5 for c clips x r crops, c in 1..num_clips, r in (1, num_crops), ordered by
    (r, c); the last point is the full grid."""
    grid = [(clips, crops) for crops in sorted({1, num_crops}) for clips in range(1, num_clips + 1)]
    subsets = [select_views(num_clips, num_crops, clips, crops) for clips, crops in grid]
    ranked = _subset_ranks(logits, valid, labels, ensemble, subsets)
    return [CurvePoint(clips, crops, top1=_percent(ranks < 1), top5=_percent(ranks < 5),
                       unscored=int((~has_view).sum()), clip_ids=tuple(int(c) for c in select_clips(num_clips, clips)))
            for (clips, crops), (ranks, has_view) in zip(grid, ranked)]


def one_view_ranks(results: "EvalResults") -> tuple[np.ndarray, str]:
    """(N,) label ranks of the 1-view headline, and where its view comes from: the centre pass
    (``results.centre_logits``) when the tester made one, else the grid's middle clip x centre crop
    (the centre clip when the number of clips is odd)."""
    r = results
    if r.centre_logits is not None:
        (ranks, _), = _subset_ranks(r.centre_logits[:, None], r.centre_valid[:, None], r.labels, r.ensemble, [None])
        return ranks, "the centre clip x centre crop, evaluated in a separate pass"
    one_view = select_views(r.num_clips, r.num_crops, 1, 1)
    (ranks, _), = _subset_ranks(r.logits, r.valid, r.labels, r.ensemble, [one_view])
    clip = int(select_clips(r.num_clips, 1)[0])
    what = "the centre clip" if r.num_clips % 2 else f"{clips_text([clip], r.num_clips)}, not the centre clip"
    return ranks, f"{what} x centre crop of the grid"


def headline_metrics(results: "EvalResults") -> dict[str, float | int]:
    """The numbers a log line needs: full-grid ``top1``, ``top5``, ``mean_class`` and the 1-view
    (centre clip, centre crop: :func:`one_view_ranks`) ``one_view_top1`` / ``one_view_top5``
    (percent), plus ``videos`` and ``unscored`` (videos without any valid view, counted wrong)."""
    r = results
    (ranks, has_view), = _subset_ranks(r.logits, r.valid, r.labels, r.ensemble, [None])
    one_ranks, _ = one_view_ranks(r)
    return {
        "top1": _percent(ranks < 1),
        "top5": _percent(ranks < 5),
        "mean_class": mean_class_accuracy(r.labels, ranks < 1, r.num_classes),
        "one_view_top1": _percent(one_ranks < 1),
        "one_view_top5": _percent(one_ranks < 5),
        "videos": r.num_videos,
        "unscored": int((~has_view).sum()),
    }
