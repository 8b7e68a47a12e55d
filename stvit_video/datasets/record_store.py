"""The rows of a video list in three numpy arrays, shared by forked loader workers without copies.

A list of :class:`~stvit_video.datasets.video_list.VideoRecord` objects is one Python object (and
two strings' worth of headers) per row. A worker forked from the process that holds it shares
its pages copy-on-write, but reading a row writes the row's reference counts (and a garbage
collection writes every tracked object's header), so each worker ends up with a private copy of
every page it touched: over an epoch, the whole list, in every worker (PyTorch issue 13246). At
Kinetics-700 scale (650k rows, 16 workers per GPU) that is gigabytes per node.

:class:`RecordStore` keeps the rows as ``paths`` (all paths' UTF-8 bytes, one uint8 array),
``offsets`` (int64, N + 1: row i's path is ``paths[offsets[i]:offsets[i + 1]]``) and ``labels``
(int64, N). Arrays have no per-row objects, so reading them writes nothing; a row's
:class:`VideoRecord` is built when it is asked for and dropped after use.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence, overload

import numpy as np

from stvit_video.datasets.video_list import VideoRecord

__all__ = ["RecordStore", "as_store"]


class RecordStore(Sequence[VideoRecord]):
    """An immutable sequence of :class:`VideoRecord`, stored in numpy arrays (see the module doc).

    Args:
        records: the rows, in order (a list, a generator, or another store).
    """

    def __init__(self, records: Iterable[VideoRecord]) -> None:
        if isinstance(records, RecordStore):
            self.paths, self.offsets, self.labels = records.paths, records.offsets, records.labels
            return
        encoded: list[bytes] = []
        labels: list[int] = []
        for record in records:
            encoded.append(record.path.encode("utf-8"))
            labels.append(int(record.label))
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.paths = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @overload
    def __getitem__(self, index: int) -> VideoRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[VideoRecord]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"row {index} of a list of {n} videos")
        i %= n
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return VideoRecord(self.paths[start:end].tobytes().decode("utf-8"), int(self.labels[i]))

    def __iter__(self) -> Iterator[VideoRecord]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        """Bytes the arrays hold (the list costs this, not ~150 bytes of objects per row)."""
        return int(self.paths.nbytes + self.offsets.nbytes + self.labels.nbytes)

    def __repr__(self) -> str:
        return f"RecordStore({len(self)} videos, {self.nbytes / 2**20:.1f} MB)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordStore):
            return (np.array_equal(self.labels, other.labels) and np.array_equal(self.offsets, other.offsets)
                    and np.array_equal(self.paths, other.paths))
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # equality by content, as a list's


def as_store(records: Sequence[VideoRecord]) -> RecordStore:
    """``records`` as a :class:`RecordStore` (itself when it is one)."""
    return records if isinstance(records, RecordStore) else RecordStore(records)
