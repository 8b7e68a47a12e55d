"""DataLoaders: samplers, worker set-up and the batch layout the trainer and tester consume.

Batches (:class:`VideoBatch`) hold uint8 frames in ``channels_last_3d`` memory (the decoder's
order; :func:`stack_frames`): move them with ``.to(device, non_blocking=True)`` and normalise
there (:class:`stvit_video.datasets.device_transforms.DeviceTransform`, which returns them
contiguous). Each dataset item (one
decoded clip) becomes ``V`` consecutive batch entries: in train ``DATA.NUM_REPEATED_SAMPLES x
AUG.NUM_SAMPLE`` clips and augmentations (same labels and indices, view 0), one in val,
``TEST.NUM_SPATIAL_CROPS`` crops in test (views ``clip * num_crops + crop``).

Samplers, per split, with ``R`` ranks:

- train: :class:`TrainSampler`: a permutation drawn from ``(RNG_SEED, epoch)`` alone, padded
  to a multiple of ``R`` and split into ``R`` disjoint shards of equal length (every rank runs
  the same number of steps); each index comes with its own seed, from which the item draws its
  clip and augmentation. So an epoch's data (order and augmentations) depend only on the
  seed and the epoch: not on the number of workers nor the number of ranks. Global step ``j``
  of batch ``b`` per rank consumes the permutation's positions ``[j * b * R, (j + 1) * b * R)``,
  so a run resumed in the middle of an epoch (``set_loader_epoch(loader, epoch, position)``,
  ``position`` = items the epoch already consumed) sees exactly what the uninterrupted run saw,
  also with another batch size or number of ranks. The loader drops the last incomplete batch.
- val and test: :class:`ShardSampler`: rank ``r`` gets items ``r, r + R, r + 2R, ...``, with
  no padding, so every view is evaluated exactly once over all ranks (``DistributedSampler``
  pads with duplicates, which counts some views twice). Ranks may get one batch more or
  less: evaluate the unwrapped model (``model.module``) under ``torch.inference_mode`` so no
  collective runs per batch, and gather the predictions once at the end.

Batch sizes: ``TRAIN.BATCH_SIZE`` (train and val) and ``TEST.BATCH_SIZE`` are global and count
batch entries (clips; views in test); each of the R ranks loads ``per_rank = global / R``
(validation checks that ``max(NUM_GPUS, 1) * NUM_SHARDS`` divides them), i.e.
``max(per_rank // V, 1)`` items: ``per_rank / (AUG.NUM_SAMPLE x DATA.NUM_REPEATED_SAMPLES)`` videos in train,
``per_rank / TEST.NUM_SPATIAL_CROPS`` clips in test (at least one item, so a per-rank test
batch smaller than the crops still loads whole clips). Epochs: ``AUG.NUM_SAMPLE`` augmentations
add steps (every video once per epoch, SlowFast's convention); ``DATA.NUM_REPEATED_SAMPLES = k``
does not: an epoch takes ``videos / k`` items, the same number of clips and steps as ``k = 1``
(see :class:`TrainSampler`).

Workers: ``worker_init_fn`` seeds NumPy and ``random`` per worker and silences the native
decoder libraries there (:func:`stvit_video.datasets.decoder.quiet_native_logging`), and with
``DATA_LOADER.MALLOC_REUSE`` keeps each worker's freed item buffers for its next items. With
``DATA_LOADER.NUM_WORKERS = 0`` the dataset runs in the caller's process, whose decord / PyAV
log settings are left alone (they are process-wide, and num_workers = 0 is mostly used to
debug, where FFmpeg's detail helps); each bad file is still opened once per run there.

Bad videos: the loader (in the main process) logs one warning per bad video the first time a
batch reports it, with the decoder's reason, however many workers met it; counting per epoch
is :class:`~stvit_video.datasets.bad_videos.BadVideoCounter`'s job.
"""
from __future__ import annotations

import functools
import logging
import math
import random
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Sampler

from stvit_video.datasets.batch_slots import BatchSlots
from stvit_video.datasets.decoder import quiet_native_logging
from stvit_video.datasets.kinetics import VideoClipDataset, VideoSample, build_dataset
from stvit_video.utils.cpu_malloc import keep_freed_cpu_memory

__all__ = ["EpochPlan", "ShardSampler", "TrainSampler", "VideoBatch", "VideoLoader", "collate_samples",
           "construct_loader", "epoch_plan", "init_worker", "seed_worker", "set_loader_epoch", "stack_frames"]

logger = logging.getLogger(__name__)


class VideoBatch(NamedTuple):
    """A collated batch (pin_memory and ``.to(device)`` per field work on NamedTuples).

    Attributes:
        frames: (B, C, T, H, W) uint8, not normalised (see ``DeviceTransform``).
        labels: (B,) int64.
        video_index: (B,) int64 rows of the video list.
        view_index: (B,) int64 view of the video (test: ``clip * num_crops + crop``; else 0).
        failed: (B,) bool, test only: the view could not be decoded (its frames are zeros).
        bad_videos: (K,) int64 rows that failed while loading this batch (for
            :class:`~stvit_video.datasets.bad_videos.BadVideoCounter`), possibly repeated.
        bad_reasons: K strings, the decoder's message for each of ``bad_videos``; a failed
            view's reason is the one of its ``video_index`` (:meth:`failure_reasons`).
        slot: between a worker and :class:`VideoLoader` only: the shared buffer of
            :class:`~stvit_video.datasets.batch_slots.BatchSlots` that ``frames`` lie in; -1 (not
            in one) in every batch the loader yields.
    """

    frames: torch.Tensor
    labels: torch.Tensor
    video_index: torch.Tensor
    view_index: torch.Tensor
    failed: torch.Tensor
    bad_videos: torch.Tensor
    bad_reasons: tuple[str, ...]
    slot: int = -1

    def failure_reasons(self) -> dict[int, str]:
        """Row -> reason for every video with a failed view in this batch (test)."""
        failed_rows = set(self.video_index[self.failed].tolist())
        return {row: reason for row, reason in zip(self.bad_videos.tolist(), self.bad_reasons)
                if row in failed_rows}


def stack_frames(frames: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """N uint8 (V, C, T, H, W) items -> uint8 (N * V, C, T, H, W) in ``channels_last_3d`` memory.

    The items come in that memory order (:func:`~stvit_video.datasets.transforms.stack_views`), so
    each is one plain copy; ``default_collate`` would write the (C, T, H, W) order, a channel
    de-interleave of the whole batch. ``out``: a contiguous uint8 (N * V, T, H, W, C) buffer to
    write into (a :class:`~stvit_video.datasets.batch_slots.BatchSlots` buffer); without it, inside
    a worker the batch is allocated in shared memory, as ``default_collate`` does, so it reaches
    the main process without another copy.
    """
    first = frames[0]
    v, c, t, h, w = first.shape
    shape = (len(frames), v, t, h, w, c)
    if out is not None:
        if tuple(out.shape) != (len(frames) * v, t, h, w, c) or not out.is_contiguous():
            raise ValueError(f"stack_frames: out {tuple(out.shape)} is not a contiguous (N*V, T, H, W, C) = "
                             f"{(len(frames) * v, t, h, w, c)} buffer")
        out = out.view(shape)
    elif torch.utils.data.get_worker_info() is not None:
        storage = first._typed_storage()._new_shared(math.prod(shape), device=first.device)
        out = first.new(storage).resize_(shape)
    else:
        out = torch.empty(shape, dtype=first.dtype)
    for i, item in enumerate(frames):
        out[i].copy_(item.permute(0, 2, 3, 4, 1))  # (V, T, H, W, C): the memory order of both
    return out.permute(0, 1, 5, 2, 3, 4).flatten(0, 1)


def collate_samples(samples: Sequence[VideoSample], slots: BatchSlots | None = None) -> VideoBatch:
    """Stack :class:`VideoSample` items, each uint8 (V, C, T, H, W), into B = sum of V entries:
    the V views of an item are consecutive and share label, video index and failed flag. In a
    worker with ``slots``, the frames go into one of its free shared buffers when there is one."""
    views, c, t, h, w = samples[0].frames.shape
    slot, out = -1, None
    worker = torch.utils.data.get_worker_info() if slots is not None else None
    if worker is not None:
        slot, out = slots.claim(worker.id, (len(samples) * views, t, h, w, c))
    frames = stack_frames([s.frames for s in samples], out=out)

    def column(values: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).repeat_interleave(views)

    return VideoBatch(
        frames=frames,
        labels=column([s.label for s in samples], torch.int64),
        video_index=column([s.video_index for s in samples], torch.int64),
        view_index=torch.tensor([v for s in samples for v in s.view_index], dtype=torch.int64),
        failed=column([s.failed for s in samples], torch.bool),
        bad_videos=torch.tensor([row for s in samples for row in s.bad_videos], dtype=torch.int64),
        bad_reasons=tuple(reason for s in samples for reason in s.bad_reasons),
        slot=slot,
    )


class ShardSampler(Sampler[int]):
    """Items ``rank, rank + num_replicas, ...`` of ``range(num_items)``: no padding, no shuffle.

    The shards of ranks ``0..num_replicas-1`` are disjoint and cover every item once; their
    lengths differ by at most 1.
    """

    def __init__(self, num_items: int, num_replicas: int = 1, rank: int = 0) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, num_replicas = {num_replicas})")
        self.num_items, self.num_replicas, self.rank = num_items, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.num_replicas))


class TrainSampler(Sampler[tuple[int, int]]):
    """Shuffled training items as ``(index, item_seed)`` pairs, reproducible per epoch.

    Epoch ``e`` uses the permutation of ``torch.randperm(num_items)`` seeded with
    ``(seed, e)``, padded by repeating its start to a multiple of ``num_replicas`` (as
    ``DistributedSampler``; :attr:`items_per_epoch` positions) and strided from ``start``:
    rank ``r`` gets positions ``start + r, start + r + R, ...``. Each item's seed is a function
    of ``(seed, e, position)``; :class:`VideoClipDataset` draws the clip and augmentation of the
    item from it, so a position gives the same sample whatever the number of ranks.

    ``repeats = k > 1`` (``DATA.NUM_REPEATED_SAMPLES``: every item brings k clips) keeps an epoch
    in clips: an epoch has ``ceil(num_items / (k R)) R`` positions, and ``k`` consecutive epochs
    share one permutation (seeded with ``(seed, e // k)``, padded to ``k`` epochs), epoch ``e``
    taking its part ``e % k``: each video once per ``k`` epochs. ``repeats = 1`` is the above.

    Call :meth:`set_epoch` before iterating; ``start`` (a global position, the items the epoch
    already consumed on all ranks together) resumes inside an epoch and shortens ``len()``.
    """

    def __init__(self, num_items: int, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 repeats: int = 1) -> None:
        if num_items < 1:
            raise ValueError("TrainSampler needs at least one item")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, num_replicas = {num_replicas})")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.num_items, self.num_replicas, self.rank, self.seed = num_items, num_replicas, rank, seed
        self.repeats = repeats
        self.per_rank = -(-num_items // (num_replicas * repeats))
        self.epoch, self.start = 0, 0

    @property
    def items_per_epoch(self) -> int:
        """Positions of an epoch on all ranks together (the padded permutation)."""
        return self.per_rank * self.num_replicas

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order, from global position ``start`` (items already consumed)."""
        if not 0 <= start <= self.items_per_epoch:
            raise ValueError(f"start {start} outside [0, {self.items_per_epoch}] positions of the epoch")
        self.epoch, self.start = epoch, start

    def _seed_of(self, epoch: int, position: int) -> int:
        return (((self.seed * 1_000_003) + epoch) * 1_000_003 + position) % 2**62

    def __iter__(self) -> Iterator[tuple[int, int]]:
        cycle, part = divmod(self.epoch, self.repeats)
        generator = torch.Generator().manual_seed(self._seed_of(cycle, -1))  # no position is -1
        order = torch.randperm(self.num_items, generator=generator).tolist()
        cycle_items = self.items_per_epoch * self.repeats
        order = (order * -(-cycle_items // self.num_items))[:cycle_items]  # pad to equal shards
        offset = part * self.items_per_epoch
        return iter([(order[offset + p], self._seed_of(self.epoch, p)) for p in self._positions()])

    def _positions(self) -> range:
        return range(self.start + self.rank, self.items_per_epoch, self.num_replicas)

    def __len__(self) -> int:
        return len(self._positions())


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed NumPy and ``random`` from the worker's torch seed.

    torch seeds each worker with ``base_seed + worker_id`` (``base_seed`` drawn from the
    loader's generator, itself seeded from ``RNG_SEED`` and the rank), so every worker draws
    different clips and augmentations, reproducibly; NumPy and ``random`` (used by timm's
    random erasing and MixUp) follow the same seed.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def init_worker(worker_id: int, *, backend: str, malloc_reuse: bool = False) -> None:
    """``worker_init_fn``: :func:`seed_worker`, then silence ``backend``'s native stderr messages
    in this worker (:func:`~stvit_video.datasets.decoder.quiet_native_logging`); with
    ``malloc_reuse`` (``DATA_LOADER.MALLOC_REUSE``) the worker keeps freed memory for its next
    items (:func:`~stvit_video.utils.cpu_malloc.keep_freed_cpu_memory`)."""
    seed_worker(worker_id)
    quiet_native_logging(backend)
    if malloc_reuse:
        keep_freed_cpu_memory(log=False)


class VideoLoader(DataLoader):
    """A ``DataLoader`` that logs each bad video once, in the main process, as batches arrive.

    Workers may each meet the same bad file; logging here, where every batch passes, gives one
    line per video for the whole run (not one per worker or per epoch). With ``slots`` (shared
    batch buffers the workers reuse; :mod:`~stvit_video.datasets.batch_slots`) each batch's
    frames are copied out of their buffer, and the buffer freed, before the batch is yielded.
    """

    def __init__(self, dataset: VideoClipDataset, *, slots: BatchSlots | None = None, **kwargs) -> None:
        if slots is not None:
            kwargs["collate_fn"] = functools.partial(collate_samples, slots=slots)
        super().__init__(dataset, **kwargs)
        self.slots = slots
        self._logged_bad: set[int] = set()

    def __iter__(self) -> Iterator[VideoBatch]:
        if self.slots is not None:
            self.slots.reset()  # before the epoch's first task: buffers of an abandoned epoch come back
        for batch in super().__iter__():
            if batch.slot >= 0:
                batch = self._out_of_slot(batch)
            if batch.bad_reasons:  # a tuple: checking it costs no device sync
                self._log_new_bad(batch)
            yield batch

    def _out_of_slot(self, batch: VideoBatch) -> VideoBatch:
        # a pinned batch is already the pin-memory thread's copy; anything else still is the buffer
        frames = batch.frames if batch.frames.is_pinned() else batch.frames.clone()
        self.slots.release(batch.slot)
        return batch._replace(frames=frames, slot=-1)

    def _log_new_bad(self, batch: VideoBatch) -> None:
        dataset = self.dataset
        action = "substituted" if dataset.retry.substitute else "its views are marked failed"
        for row, reason in zip(batch.bad_videos.tolist(), batch.bad_reasons):
            if row not in self._logged_bad:
                self._logged_bad.add(row)
                logger.warning("%s: video %d could not be decoded (%s): %s", dataset.name, row, action, reason)


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is not None or rank is not None:
        return num_replicas or 1, rank or 0
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def construct_loader(cfg: CfgNode, split: str, *, dataset: VideoClipDataset | None = None,
                     num_replicas: int | None = None, rank: int | None = None) -> VideoLoader:
    """The :class:`VideoLoader` of ``split`` ("train", "val" or "test"), yielding :class:`VideoBatch`.

    Args:
        cfg: the run's config (``DATA_LOADER.*``, batch sizes, ``NUM_GPUS``, ``NUM_SHARDS``).
        split: which list to load.
        dataset: use this dataset instead of building it from the config.
        num_replicas, rank: shard for this rank; default: from ``torch.distributed`` when it
            is initialised, else a single process.
    """
    dataset = build_dataset(cfg, split) if dataset is None else dataset
    num_replicas, rank = _world(num_replicas, rank)
    train = split == "train"
    global_batch = cfg.TRAIN.BATCH_SIZE if split != "test" else cfg.TEST.BATCH_SIZE
    # per-rank batch entries -> items: each item brings views_per_item entries
    batch_size = max(max(global_batch // num_replicas, 1) // dataset.views_per_item, 1)
    generator = torch.Generator().manual_seed(cfg.RNG_SEED + rank)
    if train:
        sampler: Sampler = TrainSampler(len(dataset), num_replicas=num_replicas, rank=rank, seed=cfg.RNG_SEED,
                                        repeats=dataset.clips_per_item)
    else:
        sampler = ShardSampler(len(dataset), num_replicas, rank)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    persistent = cfg.DATA_LOADER.PERSISTENT_WORKERS and workers > 0
    return VideoLoader(
        dataset,
        slots=_batch_slots(cfg, dataset, batch_size) if train and persistent else None,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and torch.cuda.is_available(),
        drop_last=train,
        persistent_workers=persistent,
        prefetch_factor=cfg.DATA_LOADER.PREFETCH_FACTOR if workers > 0 else None,
        worker_init_fn=functools.partial(init_worker, backend=dataset.backend,
                                         malloc_reuse=cfg.DATA_LOADER.MALLOC_REUSE),
        generator=generator,
    )


def _batch_slots(cfg: CfgNode, dataset: VideoClipDataset, batch_size: int) -> BatchSlots | None:
    """The training workers' reusable batch buffers (``DATA_LOADER.REUSE_BATCH_MEMORY``), or None:
    off, or the shared memory is too small (a warning; batches then take new segments as usual)."""
    if not cfg.DATA_LOADER.REUSE_BATCH_MEMORY:
        return None
    c, t, h, w = dataset.placeholder_shape
    workers, slots = cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA_LOADER.PREFETCH_FACTOR + 2
    shape = (batch_size * dataset.views_per_item, t, h, w, c)
    try:
        return BatchSlots(workers, slots, shape)
    except RuntimeError as e:
        batch_mib = math.prod(shape) / 2**20
        logger.warning("DATA_LOADER.REUSE_BATCH_MEMORY: cannot allocate %d workers x %d batches of %.1f MiB "
                       "(%.1f MiB) in shared memory (%s); each batch takes a new segment instead. A container "
                       "needs a larger /dev/shm (docker --shm-size)", workers, slots, batch_mib,
                       workers * slots * batch_mib, e)
        return None


def set_loader_epoch(loader: DataLoader, epoch: int, start: int = 0) -> None:
    """Position a training loader at ``epoch``, from global position ``start`` (the items all
    ranks consumed before), without loading the skipped items, when a run resumes mid-epoch."""
    if isinstance(loader.sampler, TrainSampler):
        loader.sampler.set_epoch(epoch, start)
    elif start:
        raise ValueError(f"set_loader_epoch: a {type(loader.sampler).__name__} cannot start at position {start}")


class EpochPlan(NamedTuple):
    """How a training loader walks an epoch, over all ranks (what the trainer counts in).

    Attributes:
        items_per_batch: items one loader batch takes on all ranks (per-rank batch x ranks).
        items_per_epoch: positions of the epoch (the padded permutation).
        num_items: items of the data set (videos in train).
    """

    items_per_batch: int
    items_per_epoch: int
    num_items: int


def epoch_plan(loader: DataLoader) -> EpochPlan:
    """The :class:`EpochPlan` of a training loader built by :func:`construct_loader`."""
    sampler = loader.sampler
    if not isinstance(sampler, TrainSampler):
        raise ValueError(f"epoch_plan: a training loader has a TrainSampler, not a {type(sampler).__name__}")
    return EpochPlan(loader.batch_size * sampler.num_replicas, sampler.items_per_epoch, sampler.num_items)

