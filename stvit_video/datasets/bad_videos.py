"""Parent-side tally of videos that could not be decoded.

DataLoader workers are separate processes: a counter kept in the dataset would change only in
the worker's copy. Instead every item carries the rows that failed while producing it and the
decoder's reasons (``VideoSample.bad_videos`` / ``bad_reasons``; in a batch,
``VideoBatch.bad_videos``, ``bad_reasons`` and ``failed``), and the trainer or tester feeds
each batch to a :class:`BadVideoCounter` in the main process:

    counter = BadVideoCounter(loader.dataset)
    for batch in loader:
        counter.update(batch)
        ...
    logger.info(counter.summary())   # end of epoch; then counter.reset()

With several ranks, gather ``counter.state()`` from every rank (``all_gather_object``) and
``merge`` them on the main rank before the summary. :meth:`BadVideoCounter.failures` lists
every bad video with its reason (the tester's report).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from stvit_video.datasets.kinetics import VideoClipDataset
    from stvit_video.datasets.loader import VideoBatch

__all__ = ["BadVideoCounter"]


class BadVideoCounter:
    """Distinct bad videos and failed test views seen in the batches of one epoch or test run."""

    def __init__(self, dataset: "VideoClipDataset") -> None:
        self.dataset = dataset
        self.reasons: dict[int, str] = {}  # bad row -> the decoder's message
        self.failed_views = 0

    def update(self, batch: "VideoBatch") -> None:
        """Add the bad rows (with their reasons) and failed views of one batch."""
        self.reasons.update(zip(batch.bad_videos.tolist(), batch.bad_reasons))
        self.failed_views += int(batch.failed.sum())

    def state(self) -> tuple[dict[int, str], int]:
        """Picklable state for gathering across ranks."""
        return dict(self.reasons), self.failed_views

    def merge(self, states: Iterable[tuple[dict[int, str], int]]) -> None:
        """Add the states of other ranks."""
        for reasons, failed in states:
            self.reasons.update(reasons)
            self.failed_views += failed

    def reset(self) -> None:
        self.reasons.clear()
        self.failed_views = 0

    @property
    def bad_videos(self) -> set[int]:
        """Rows of the distinct videos that could not be decoded."""
        return set(self.reasons)

    @property
    def count(self) -> int:
        """Distinct videos that could not be decoded."""
        return len(self.reasons)

    def paths(self) -> list[str]:
        """Paths of the bad videos, in row order."""
        return [self.dataset.videos[i].path for i in sorted(self.reasons)]

    def failures(self) -> list[tuple[int, str, str]]:
        """(row, path, reason) of every bad video, in row order."""
        return [(i, self.dataset.videos[i].path, self.reasons[i]) for i in sorted(self.reasons)]

    def summary(self, max_paths: int = 20) -> str:
        """One line for the log: counts, then up to ``max_paths`` paths."""
        name = getattr(self.dataset, "name", "dataset")
        total = len(self.dataset.videos)
        if not self.reasons and not self.failed_views:
            return f"{name}: all videos decoded"
        text = f"{name}: {self.count} of {total} videos could not be decoded"
        if self.failed_views:
            text += f" ({self.failed_views} test views marked failed)"
        paths = self.paths()
        more = f" ... and {len(paths) - max_paths} more" if len(paths) > max_paths else ""
        return f"{text}: {', '.join(paths[:max_paths])}{more}"
