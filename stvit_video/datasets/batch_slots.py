"""Shared-memory batch buffers that the training loader's workers reuse (``DATA_LOADER.REUSE_BATCH_MEMORY``).

Why: a DataLoader worker hands each batch to the main process in shared memory, and by default
every batch is a new shared-memory segment, which torch zero-fills as it allocates it
(``posix_fallocate``) and the worker then page-faults in as it writes the batch. For 32 x 224
uint8 clips that costs about 3.3 ms per clip (1.9 ms allocating, 1.4 ms faulting), 12-14% of a
decord worker's time per clip, and 20% with ``DATA.NUM_REPEATED_SAMPLES 2``, whose items are
cheaper per clip. Writing into a buffer that is already mapped costs 0.1 ms per clip.

Protocol (train loaders with persistent workers only, so one set of workers owns the buffers):

- The main process allocates ``slots`` buffers per worker, each one batch of uint8
  ``(B, T, H, W, C)`` frames, in shared memory, once, before the workers start; one state byte
  per buffer (0 free, 1 held) and one lock.
- A worker's collate :meth:`claim` s a free buffer of its own row, writes the batch there, and
  the batch carries the buffer's number (``VideoBatch.slot``). With no free buffer, or a batch of
  another shape, it allocates a new segment as before (``slot = -1``): never a wait, never a
  shared buffer twice.
- The main process, before the batch leaves the loader, copies the frames out of the buffer (the
  pin-memory thread already made its pinned copy) and :meth:`release` s it. A batch a caller
  holds therefore never aliases a buffer a worker may write.
- :meth:`reset` frees every buffer before an epoch's iterator starts: batches of an abandoned
  epoch are discarded by the DataLoader, so their buffers would otherwise stay held; a stale
  task of the abandoned epoch writing into a freed buffer only overwrites a discarded batch.

The lock orders the buffer's writes and reads against the state byte across processes (its
acquire and release are memory barriers), on any CPU.
"""
from __future__ import annotations

import multiprocessing
from typing import Optional

import torch

__all__ = ["BatchSlots"]


class BatchSlots:
    """``slots`` reusable shared-memory batch buffers per loader worker.

    Args:
        num_workers: ``DATA_LOADER.NUM_WORKERS`` (> 0).
        slots: buffers per worker; ``DATA_LOADER.PREFETCH_FACTOR + 2`` covers the batches a worker
            can have in flight (the DataLoader sends each worker at most ``PREFETCH_FACTOR`` ahead).
        batch_shape: uint8 frames of one batch in memory order, ``(B, T, H, W, C)``.
        context: the start method of the loader's workers (its ``multiprocessing_context``); None:
            the default, which a DataLoader without one uses too. The lock must come from it.

    Raises:
        RuntimeError: the shared memory cannot be allocated (e.g. a small ``/dev/shm``).
    """

    def __init__(self, num_workers: int, slots: int, batch_shape: tuple[int, ...],
                 context: Optional[str] = None) -> None:
        if num_workers < 1 or slots < 1:
            raise ValueError(f"BatchSlots needs >= 1 worker and slot, got {num_workers} x {slots}")
        self.num_workers, self.slots, self.batch_shape = num_workers, slots, tuple(batch_shape)
        self.frames = torch.empty((num_workers * slots, *self.batch_shape), dtype=torch.uint8).share_memory_()
        self._states = torch.zeros(num_workers * slots, dtype=torch.uint8).share_memory_()
        self._lock = multiprocessing.get_context(context).Lock()
        _cache_in_this_process(self.frames)

    @property
    def nbytes(self) -> int:
        """Shared memory the buffers take."""
        return self.frames.numel()

    def claim(self, worker_id: int, shape: tuple[int, ...]) -> tuple[int, Optional[torch.Tensor]]:
        """In worker ``worker_id``: a free buffer of its own, as ``(slot, (B, T, H, W, C) view)``,
        marked held; ``(-1, None)`` when none is free or ``shape`` is not the buffers' shape."""
        if tuple(shape) != self.batch_shape or not 0 <= worker_id < self.num_workers:
            return -1, None
        first = worker_id * self.slots
        with self._lock:
            free = (self._states[first : first + self.slots] == 0).nonzero()
            if free.numel() == 0:
                return -1, None
            slot = first + int(free[0])
            self._states[slot] = 1
        return slot, self.frames[slot]

    def release(self, slot: int) -> None:
        """In the main process, once the batch in ``slot`` has been copied out."""
        with self._lock:
            self._states[slot] = 0

    def reset(self) -> None:
        """Free every buffer (before an epoch's iterator starts; see the module docstring)."""
        with self._lock:
            self._states.zero_()

    def held(self) -> int:
        """Buffers held now (tests, diagnostics)."""
        with self._lock:
            return int(self._states.sum())

    def __repr__(self) -> str:
        return (f"BatchSlots({self.num_workers} workers x {self.slots} batches of {self.batch_shape}, "
                f"{self.nbytes / 2**20:.1f} MiB shared)")


def _cache_in_this_process(frames: torch.Tensor) -> None:
    """Register the buffers in torch's cache of shared storages, so that a batch a worker sends as
    a view of them is rebuilt here on this mapping (no new mapping and page faults per batch).
    Only a speed-up: where torch's sharing internals differ, batches are mapped anew as before."""
    try:
        from torch.multiprocessing import reductions

        storage = frames.untyped_storage()
        fd, _ = storage._share_fd_cpu_()
        reductions.shared_cache[reductions.fd_id(fd)] = reductions.StorageWeakRef(storage)
    except (AttributeError, RuntimeError, OSError):
        pass
