"""DataLoaders: samplers, worker seeding and the batch layout the trainer and tester consume.

Samplers, per split, with ``R`` ranks:

- train: ``DistributedSampler(shuffle=True, seed=RNG_SEED)`` when distributed, else a
  ``RandomSampler``; the loader drops the last incomplete batch. Call
  :func:`set_loader_epoch` at the start of every epoch (new shuffle across ranks).
- val and test: :class:`ShardSampler`: rank ``r`` gets items ``r, r + R, r + 2R, ...``, with
  no padding, so every view is evaluated exactly once over all ranks (``DistributedSampler``
  pads with duplicates, which counts some views twice). Ranks may get one batch more or
  less: evaluate the unwrapped model (``model.module``) under ``torch.no_grad`` so no
  collective runs per batch, and gather the predictions once at the end.

Batch sizes: ``TRAIN.BATCH_SIZE`` and ``TEST.BATCH_SIZE`` are global and count clips (views
in test); each of the R ranks loads ``global / R`` (validation checks that
``max(NUM_GPUS, 1) * NUM_SHARDS`` divides them). With
``AUG.NUM_SAMPLE = S`` each training video gives S clips, so a rank loads ``per-rank / S``
videos per batch.
"""
from __future__ import annotations

import random
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, default_collate

from stvit_video.datasets.kinetics import VideoClipDataset, VideoSample, build_dataset

__all__ = ["ShardSampler", "VideoBatch", "collate_samples", "construct_loader", "set_loader_epoch",
           "seed_worker"]


class VideoBatch(NamedTuple):
    """A collated batch (pin_memory and ``.to(device)`` per field work on NamedTuples).

    Attributes:
        frames: (B, C, T, H, W) float32.
        labels: (B,) int64.
        video_index: (B,) int64 rows of the video list.
        view_index: (B,) int64 view of the video (test: ``clip * num_crops + crop``).
        failed: (B,) bool, test only: the view could not be decoded (its frames are zeros).
        bad_videos: (K,) int64 rows that failed while loading this batch (for
            :class:`~stvit_video.datasets.bad_videos.BadVideoCounter`), possibly repeated.
    """

    frames: torch.Tensor
    labels: torch.Tensor
    video_index: torch.Tensor
    view_index: torch.Tensor
    failed: torch.Tensor
    bad_videos: torch.Tensor


def collate_samples(samples: Sequence[VideoSample]) -> VideoBatch:
    """Stack :class:`VideoSample` items; items with (S, C, T, H, W) frames (``AUG.NUM_SAMPLE``)
    are flattened to S consecutive batch entries sharing label and indices."""
    # default_collate stacks into shared memory inside a worker, saving a copy of the batch
    frames = default_collate([s.frames for s in samples])
    repeats = 1
    if frames.ndim == 6:  # (B, S, C, T, H, W) -> (B * S, C, T, H, W)
        repeats = frames.shape[1]
        frames = frames.flatten(0, 1)

    def column(values: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).repeat_interleave(repeats)

    bad = [row for s in samples for row in s.bad_videos]
    return VideoBatch(
        frames=frames,
        labels=column([s.label for s in samples], torch.int64),
        video_index=column([s.video_index for s in samples], torch.int64),
        view_index=column([s.view_index for s in samples], torch.int64),
        failed=column([s.failed for s in samples], torch.bool),
        bad_videos=torch.tensor(bad, dtype=torch.int64),
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


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is not None or rank is not None:
        return num_replicas or 1, rank or 0
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def construct_loader(cfg: CfgNode, split: str, *, dataset: VideoClipDataset | None = None,
                     num_replicas: int | None = None, rank: int | None = None) -> DataLoader:
    """The DataLoader of ``split`` ("train", "val" or "test"), yielding :class:`VideoBatch`.

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
    batch_size = max(global_batch // num_replicas, 1)
    if train:
        batch_size = max(batch_size // dataset.num_samples, 1)
    generator = torch.Generator().manual_seed(cfg.RNG_SEED + rank)
    if train and num_replicas > 1:
        sampler: Sampler[int] = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank,
                                                   shuffle=True, seed=cfg.RNG_SEED)
    elif train:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = ShardSampler(len(dataset), num_replicas, rank)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and torch.cuda.is_available(),
        drop_last=train,
        persistent_workers=cfg.DATA_LOADER.PERSISTENT_WORKERS and workers > 0,
        worker_init_fn=seed_worker,
        generator=generator,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle a training loader for ``epoch`` (needed by ``DistributedSampler``)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)

