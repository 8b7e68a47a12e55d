"""Private memory of loader workers that read a large video list: a Python list of records against
:class:`~stvit_video.datasets.record_store.RecordStore`, side by side.

A generated list of ``rows`` Kinetics-like rows (``train/<class>/<id>_000010_000020.mp4``) is
held by the parent, which forks ``workers`` DataLoader workers. Each worker reads its share of
the rows the way :class:`~stvit_video.datasets.kinetics.VideoClipDataset` does (the row's path
and label), without decoding, in order, so one pass is an epoch's worth of list reads (decoding
650k clips would take hours and does not touch the list). Every ``probe_every`` rows a worker
reads its private memory (``/proc/self/smaps_rollup``: Private_Clean + Private_Dirty, Linux);
the growth from its first probe to its last is the list's cost per worker.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from stvit_video.datasets.record_store import RecordStore
from stvit_video.datasets.video_list import VideoRecord

__all__ = ["STORAGES", "format_list_memory_table", "generated_records", "private_mb", "worker_growth"]

STORAGES = ("list", "store")  # today's list of VideoRecord, and the numpy-backed store
_SMAPS = Path("/proc/self/smaps_rollup")


def private_mb() -> float:
    """This process's private memory (clean + dirty pages) in MB; -1 where the kernel does not say."""
    try:
        text = _SMAPS.read_text()
    except OSError:
        return -1.0
    kb = sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(("Private_Clean", "Private_Dirty")))
    return kb / 1024


def generated_records(rows: int, classes: int = 700) -> list[VideoRecord]:
    """``rows`` Kinetics-700-like rows (absolute paths, 11-character ids, labels cycling over ``classes``)."""
    return [VideoRecord(f"/data/kinetics700/train/class_{i % classes:03d}/{i:011d}_000010_000020.mp4", i % classes)
            for i in range(rows)]


class _RowReader(Dataset):
    """Item i = row i's path length + label, read as the video dataset reads a row; every
    ``probe_every``-th item also reports the worker's private memory."""

    def __init__(self, videos: Sequence[VideoRecord], probe_every: int) -> None:
        self.videos, self.probe_every = videos, probe_every

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[int, int, float]:
        record = self.videos[index]
        probe = private_mb() if index % self.probe_every == 0 or index == len(self) - 1 else -1.0
        info = torch.utils.data.get_worker_info()
        return len(record.path) + record.label, info.id if info is not None else 0, probe


def worker_growth(rows: int, storage: str, *, workers: int = 2, batch: int = 256,
                  probe_every: int = 5000) -> dict[str, Any]:
    """One pass of ``workers`` forked workers over a list of ``rows`` in ``storage``.

    Returns:
        ``{"storage", "rows", "workers", "list_mb" (the parent's list: its private memory; the
        store: its arrays), "start_s" (to the loader's first batch), "growth_mb" (per worker, last
        probe minus first)}``.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r}: use one of {', '.join(STORAGES)}")
    gc.collect()
    before = private_mb()
    records = generated_records(rows)
    videos: Sequence[VideoRecord] = records if storage == "list" else RecordStore(records)
    del records
    gc.collect()
    list_mb = private_mb() - before
    loader = DataLoader(_RowReader(videos, probe_every), batch_size=batch, num_workers=workers,
                        multiprocessing_context="fork", shuffle=False)
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    start = time.perf_counter()
    start_s = None
    for _, worker_ids, probes in loader:
        if start_s is None:
            start_s = time.perf_counter() - start
        for worker, probe in zip(worker_ids.tolist(), probes.tolist()):
            if probe >= 0:
                first.setdefault(worker, probe)
                last[worker] = probe
    if isinstance(videos, RecordStore):  # the arrays themselves (private_mb also counts the freed build list)
        list_mb = videos.nbytes / 2**20
    return {"storage": storage, "rows": rows, "workers": workers, "list_mb": list_mb, "start_s": start_s,
            "growth_mb": [last[w] - first[w] for w in sorted(first)]}


def format_list_memory_table(results: Sequence[dict[str, Any]]) -> str:
    """One line per storage: the parent's list size and each worker's private-memory growth."""
    lines = ["storage  rows      parent MB  first batch s  worker growth MB (first -> last probe of one pass)"]
    for r in results:
        growth = ", ".join(f"{g:+.1f}" for g in r["growth_mb"])
        lines.append(f"{r['storage']:<8} {r['rows']:<9} {r['list_mb']:>9.1f}  {r['start_s']:>13.2f}  {growth}")
    return "\n".join(lines)
