"""Parent-side tally of videos that could not be decoded.

DataLoader workers are separate processes: a counter kept in the dataset would change only in
the worker's copy. Instead every item carries the rows that failed while producing it
(``VideoSample.bad_videos``; in a batch, ``VideoBatch.bad_videos`` and ``VideoBatch.failed``),
and the trainer or tester feeds each batch to a :class:`BadVideoCounter` in the main process:

    counter = BadVideoCounter(loader.dataset)
    for batch in loader:
        counter.update(batch)
        ...
    logger.info(counter.summary())   # end of epoch; then counter.reset()

With several ranks, gather ``counter.state()`` from every rank (``all_gather_object``) and
``merge`` them on the main rank before the summary.
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
        self.bad_videos: set[int] = set()
        self.failed_views = 0

    def update(self, batch: "VideoBatch") -> None:
        """Add the bad rows and failed views of one batch."""
        self.bad_videos.update(int(i) for i in batch.bad_videos.tolist())
        self.failed_views += int(batch.failed.sum())

    def state(self) -> tuple[list[int], int]:
        """Picklable state for gathering across ranks."""
        return sorted(self.bad_videos), self.failed_views

    def merge(self, states: Iterable[tuple[list[int], int]]) -> None:
        """Add the states of other ranks."""
        for rows, failed in states:
            self.bad_videos.update(rows)
            self.failed_views += failed

    def reset(self) -> None:
        self.bad_videos.clear()
        self.failed_views = 0

    @property
    def count(self) -> int:
        """Distinct videos that could not be decoded."""
        return len(self.bad_videos)

    def paths(self) -> list[str]:
        """Paths of the bad videos, in row order."""
        return [self.dataset.videos[i].path for i in sorted(self.bad_videos)]

    def summary(self, max_paths: int = 20) -> str:
        """One line for the log: counts, then up to ``max_paths`` paths."""
        name = getattr(self.dataset, "name", "dataset")
        total = len(self.dataset.videos)
        if not self.bad_videos and not self.failed_views:
            return f"{name}: all videos decoded"
        text = f"{name}: {self.count} of {total} videos could not be decoded"
        if self.failed_views:
            text += f" ({self.failed_views} test views marked failed)"
        paths = self.paths()
        more = f" ... and {len(paths) - max_paths} more" if len(paths) > max_paths else ""
        return f"{text}: {', '.join(paths[:max_paths])}{more}"
