"""Work spread over worker processes, with progress: a tqdm bar on a terminal, plain lines
(every 10%) in a log file or a cluster job's output, where a bar's carriage returns pile up.

The functions given to :func:`run_parallel` catch the failures of their own item and return
them as results (a bad video is a result, not an exception): an exception that escapes is a
bug and stops the run. A worker process that *dies* (a crash inside FFmpeg or decord on a
damaged file) is handled here: the items that were in flight are re-run one at a time in a
fresh process, the one that kills its process again gets ``on_crash(item)`` as its result,
and the run goes on.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from tqdm import tqdm

__all__ = ["available_cpus", "run_parallel"]

T = TypeVar("T")
R = TypeVar("R")

# Tasks queued per worker: enough to keep workers busy, few enough to re-run after a crash.
_QUEUE_PER_WORKER = 2
# Without a terminal, a progress line every this fraction of the items.
_LINE_EVERY = 0.1


class _LineProgress:
    """tqdm's ``update``/``close`` as plain lines on stderr: ``desc: 96/960 (10%), 21.5 videos/s, eta 40 s``."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.start = time.monotonic()
        self.step = max(1, round(total * _LINE_EVERY))

    def update(self) -> None:
        self.done += 1
        if self.done % self.step == 0 or self.done == self.total:
            elapsed = time.monotonic() - self.start
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            print(f"{self.desc}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                  f"{rate:.1f} videos/s, eta {eta:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _progress_bar(total: int, desc: str, enabled: bool):
    if enabled and not sys.stderr.isatty():
        return _LineProgress(total, desc)
    return tqdm(total=total, desc=desc, unit="video", disable=not enabled, smoothing=0.05)


def available_cpus() -> int:
    """CPUs this process may use (respects Slurm / cgroup CPU sets, unlike ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: FFmpeg and decord start threads, and a forked child of a process holding
    # their locks can deadlock.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _alone(fn: Callable[[T], R], item: T, on_crash: Optional[Callable[[T], R]]) -> R:
    """Run one item in a fresh process: the item whose process dies is the culprit."""
    with _pool(1) as pool:
        try:
            return pool.submit(fn, item).result()
        except BrokenProcessPool as e:
            if on_crash is None:
                raise RuntimeError(f"a worker process died while processing {item!r}") from e
            return on_crash(item)


def _in_processes(fn: Callable[[T], R], items: Sequence[T], workers: int,
                  on_crash: Optional[Callable[[T], R]]) -> Iterator[R]:
    queue = iter(items)
    while True:
        pool = _pool(workers)
        in_flight: deque = deque()
        crashed = False
        try:
            for item in itertools.islice(queue, workers * _QUEUE_PER_WORKER):
                in_flight.append((item, None))  # taken from the queue: re-run if submit fails
                in_flight[-1] = (item, pool.submit(fn, item))
            if not in_flight:
                return
            while in_flight:
                result = in_flight[0][1].result()  # BrokenProcessPool when any worker died
                in_flight.popleft()
                yield result
                for new in itertools.islice(queue, 1):
                    in_flight.append((new, None))  # taken from the queue: re-run if submit fails
                    in_flight[-1] = (new, pool.submit(fn, new))
        except BrokenProcessPool:
            crashed = True  # handled below, once the dead pool is shut down
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if crashed:  # the in-flight items, one at a time, then carry on with a new pool
            for item, _ in in_flight:
                yield _alone(fn, item, on_crash)


def run_parallel(fn: Callable[[T], R], items: Sequence[T], *, workers: int, desc: str,
                 progress: bool = True, on_crash: Optional[Callable[[T], R]] = None) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in the order of ``items``.

    Args:
        fn: a module-level function (or ``functools.partial`` of one): it is pickled to the
            worker processes.
        workers: worker processes; ``<= 1`` runs in this process (no pickling, easy to debug;
            a crash then ends the program).
        desc: label of the progress bar.
        progress: show progress on stderr (a bar on a terminal, else a line every 10%).
        on_crash: the result for an item whose worker process died on it twice; None raises.
    """
    bar = _progress_bar(len(items), desc, progress)
    try:
        if workers <= 1 or len(items) <= 1:
            results: Iterator[R] = map(fn, items)
        else:
            results = _in_processes(fn, items, min(workers, len(items)), on_crash)
        for result in results:
            yield result
            bar.update()
    finally:
        bar.close()
