"""How fast the data pipeline delivers training batches: per backend and per worker count.

Used by ``tools/benchmark.py --what loader``. The loader under test is the trainer's own
(:func:`~stvit_video.datasets.loader.construct_loader` on the ``train`` split of a config),
so decoding, clip sampling, the uint8 augmentations and collation are all counted; batches
stay uint8 on the host (normalisation happens on the device, outside the loader).

Without a data folder the benchmark writes its own videos shaped like Kinetics after
``data_prep resize`` (short side 256, 10 s at 30 fps, keyframe every 32 frames, a scrolling
texture so they do not compress to nothing).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fvcore.common.config import CfgNode

__all__ = ["KINETICS_LIKE", "loader_rows", "workers_to_feed", "write_benchmark_videos"]

# (width, height, frames, fps, gop) of the generated videos: Kinetics after data_prep resize
KINETICS_LIKE = (340, 256, 300, 30, 32)


def write_benchmark_videos(folder: Path, num_videos: int, repeats: int = 1,
                           size: tuple[int, int, int, int, int] = KINETICS_LIKE) -> Path:
    """Write ``num_videos`` mp4 files and a ``train.csv`` listing each ``repeats`` times; returns ``folder``."""
    from stvit_video.datasets.synthetic import VideoSpec, write_video

    width, height, frames, fps, gop = size
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(num_videos):
        name = f"video_{i:03d}.mp4"
        if not (folder / name).exists():
            write_video(folder / name, VideoSpec(width=width, height=height, num_frames=frames, fps=fps, gop=gop,
                                                 texture=True))
        names.append(name)
    lines = [f"{name} 0" for _ in range(repeats) for name in names]
    (folder / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _time_loader(cfg: CfgNode, warmup: int, batches: int) -> tuple[float, tuple[int, ...], str]:
    """Seconds for ``batches`` batches after ``warmup`` untimed ones; the batch shape and dtype."""
    from stvit_video.datasets.loader import construct_loader, set_loader_epoch

    loader = construct_loader(cfg, "train", num_replicas=1, rank=0)
    needed = warmup + batches
    if len(loader) < needed:
        raise ValueError(f"loader benchmark: the list has {len(loader)} batches of {cfg.TRAIN.BATCH_SIZE} clips, "
                         f"{needed} are needed (warm-up {warmup} + timed {batches}); list more videos")
    set_loader_epoch(loader, 0)
    it = iter(loader)
    for _ in range(warmup):  # worker start-up and the first prefetch are not throughput
        batch = next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    elapsed = time.perf_counter() - start
    del it
    return elapsed, tuple(batch.frames.shape), str(batch.frames.dtype).replace("torch.", "")


def loader_rows(cfg_name: str, data_dir: str, *, backends: Sequence[str], workers: Sequence[int], batch: int,
                warmup: int, batches: int, opts: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per (backend, worker count): clips/s of the trainer's loader and ms per clip.

    ``ms_per_clip`` is wall time per clip over the timed batches; with 0 workers (the loader
    runs in this process) it is the cost of decoding and augmenting one clip, the figure to
    divide a training step's appetite by.
    """
    from stvit_video.config import load_config

    rows = []
    for backend in backends:
        for num_workers in workers:
            cfg = load_config(cfg_name, [*opts, "DATA.PATH_TO_DATA_DIR", data_dir, "DATA.DECODING_BACKEND", backend,
                                         "DATA_LOADER.NUM_WORKERS", str(num_workers), "TRAIN.BATCH_SIZE", str(batch),
                                         "NUM_GPUS", "0", "DATA_LOADER.PIN_MEMORY", "False"])
            elapsed, shape, dtype = _time_loader(cfg, warmup, batches)
            clips = batch * batches
            rows.append({"what": "loader", "backend": backend, "workers": num_workers, "batch": batch,
                         "clips_per_s": clips / elapsed, "ms_per_clip": 1000 * elapsed / clips,
                         "batch_shape": list(shape), "dtype": dtype,
                         "input": [3, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE],
                         "sampling_rate": cfg.DATA.SAMPLING_RATE})
    return rows


def workers_to_feed(rows: list[dict[str, Any]], backend: str, clips_per_s: float) -> Optional[int]:
    """Workers of ``backend`` needed to deliver ``clips_per_s`` (a training step's appetite).

    One worker delivers what the 0-worker row measured (the same code in one process), so the
    answer is ``ceil(clips_per_s / that rate)``; None without a 0-worker row.
    """
    single = [r for r in rows if r["backend"] == backend and r["workers"] == 0]
    if not single:
        return None
    return max(1, math.ceil(clips_per_s / single[0]["clips_per_s"]))
