"""Work spread over worker processes, with a progress bar.

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
        progress: show a tqdm bar on stderr.
        on_crash: the result for an item whose worker process died on it twice; None raises.
    """
    bar = tqdm(total=len(items), desc=desc, unit="video", disable=not progress, smoothing=0.05)
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
