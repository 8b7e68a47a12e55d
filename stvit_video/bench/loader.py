"""How fast the data pipeline delivers training batches: per backend and per worker count.

Used by ``tools/benchmark.py --what loader``. Per backend, on the same videos:

- decode ms/clip: open a video and decode one random training clip's frames, in this
  process: the decoder's own cost;
- item ms/clip: one ``dataset[i]`` of the training set in this process with one torch thread
  (decode + clip sampling + uint8 augmentation): what one loader worker spends per clip. The
  values of ``DATA.NUM_REPEATED_SAMPLES`` are timed item by item in turn, from the same seeds
  (:func:`time_items`), so their ratio is a paired comparison;
- loader clips/s and ms/clip per worker count: batches of the trainer's own training loader
  (:func:`~stvit_video.datasets.loader.construct_loader`: workers, decoding, transforms,
  collation) after untimed warm-up batches, epochs wrapping around. Batches stay uint8 on
  the host; normalisation happens on the device, outside the loader.

The single-process timings run first, then the loaders one at a time, so no workers compete;
the loaders of the k values take turns for ``--rounds`` rounds and each row keeps its median.
Without a data folder the benchmark writes its own videos shaped like Kinetics after
``data_prep resize`` (short side 256, 10 s at 30 fps, keyframe every 32 frames, a scrolling
texture so they do not compress to nothing).
"""
from __future__ import annotations

import argparse
import gc
import itertools
import math
import statistics
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from stvit_video.utils.cpu_malloc import keep_freed_cpu_memory

__all__ = ["KINETICS_LIKE", "feed_projection", "loader_rows", "repeat_speedups", "time_decode", "time_items",
           "workers_to_feed", "write_benchmark_videos"]

# (width, height, frames, fps, gop) of the generated videos: Kinetics after data_prep resize
KINETICS_LIKE = (340, 256, 300, 30, 32)


def write_benchmark_videos(folder: Path, num_videos: int, size: tuple[int, int, int, int, int] = KINETICS_LIKE,
                           repeats: int = 1) -> Path:
    """Write ``num_videos`` mp4 files and a ``train.csv`` listing each ``repeats`` times; returns ``folder``.

    Repeats make one epoch long enough for the warm-up and timed batches: at an epoch's end the
    workers' prefetching restarts, which is not what a long Kinetics epoch sees.
    """
    from stvit_video.bench.videos import VideoSpec, write_video

    width, height, frames, fps, gop = size
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"video_{i:03d}.mp4" for i in range(num_videos)]
    for name in names:
        write_video(folder / name, VideoSpec(width=width, height=height, num_frames=frames, fps=fps, gop=gop,
                                             texture=True))
    (folder / "train.csv").write_text("".join(f"{name} 0\n" for _ in range(repeats) for name in names),
                                      encoding="utf-8")
    return folder


def time_decode(cfg: Any, backend: str, paths: Sequence[str], clips: int) -> float:
    """Mean ms to open a video and decode one random training clip's frames, in this process."""
    from stvit_video.datasets.clip_sampling import ClipSpec, random_clip
    from stvit_video.datasets.decoder import open_video

    spec = ClipSpec(cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for path in itertools.islice(itertools.cycle(paths), clips):
        with open_video(path, backend) as video:
            video.get_frames(random_clip(spec, video.num_frames, video.fps, generator).indices)
    return (time.perf_counter() - start) / clips * 1000


def time_items(datasets: Sequence[Any], items: int) -> list[float]:
    """Mean ms per clip of ``dataset[i]`` (decode + sampling + transform) in this process with one
    torch thread, for each of ``datasets`` (e.g. one per ``DATA.NUM_REPEATED_SAMPLES``); an item of
    ``views_per_item`` clips counts as that many.

    Side by side: item ``j`` of every dataset is timed in turn, drawn from the same seed ``j``, so
    the datasets see the same videos and, where their samplers draw alike (a 1.0-span window of
    repeated sampling starts where a single clip would), the same frames; drift of a shared machine
    falls on all of them alike.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    elapsed = [0.0] * len(datasets)
    try:
        for dataset in datasets:  # first-call costs (imports, the file cache) are not throughput
            dataset[(0, 0)]
        for j in range(max(items, 1)):
            for d, dataset in enumerate(datasets):
                start = time.perf_counter()
                dataset[(j % len(dataset), j)]
                elapsed[d] += time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return [1000 * e / (max(items, 1) * dataset.views_per_item) for e, dataset in zip(elapsed, datasets)]


def _time_loader(cfg: Any, warmup: int, batches: int) -> tuple[float, tuple[int, ...], str]:
    """Seconds for ``batches`` training batches after ``warmup`` untimed ones; the batch shape and dtype."""
    from stvit_video.datasets.loader import construct_loader

    loader = construct_loader(cfg, "train", num_replicas=1, rank=0)
    if len(loader) == 0:
        raise ValueError(f"loader benchmark: the list has fewer videos than a batch of {loader.batch_size}; "
                         "list more videos or use a smaller --batch")
    stream = (batch for _ in itertools.count() for batch in loader)  # epochs wrap around
    for _ in range(warmup):  # worker start-up and the first prefetch are not throughput
        batch = next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(stream)
    elapsed = time.perf_counter() - start
    stream.close()  # stop the workers before the next loader starts its own
    del stream, loader
    gc.collect()
    return elapsed, tuple(batch.frames.shape), str(batch.frames.dtype).replace("torch.", "")


def loader_rows(cfg_name: Optional[str], data_dir: str, *, backends: Sequence[str], workers: Sequence[int],
                batch: int, warmup: int, batches: int, decode_clips: int = 20, repeats: Sequence[int] = (1,),
                rounds: int = 1, opts: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per (backend, worker count, ``DATA.NUM_REPEATED_SAMPLES`` k); see the module
    docstring for the columns. Rows of every k are measured in this one run, on the same videos;
    the loaders of the k values are timed in turn ``rounds`` times and each row keeps its median."""
    from stvit_video.config import load_config
    from stvit_video.datasets import build_dataset

    def config(backend: str, num_workers: int, k: int):
        return load_config(cfg_name, [*opts, "DATA.PATH_TO_DATA_DIR", data_dir, "DATA.DECODING_BACKEND", backend,
                                      "DATA_LOADER.NUM_WORKERS", str(num_workers), "TRAIN.BATCH_SIZE", str(batch),
                                      "NUM_GPUS", "0", "DATA_LOADER.PIN_MEMORY", "False",
                                      "DATA.NUM_REPEATED_SAMPLES", str(k)])

    decode_ms, item_ms = {}, {}
    if config(backends[0], 0, 1).DATA_LOADER.MALLOC_REUSE:
        keep_freed_cpu_memory()  # items timed in this process allocate as a worker's do
    for backend in backends:
        datasets = [build_dataset(config(backend, 0, k), "train") for k in repeats]
        paths = [v.path for v in datasets[0].videos]
        single = config(backend, 0, 1)
        time_decode(single, backend, paths[:1], 1)  # warm the file cache and the imports
        decode_ms[backend] = time_decode(single, backend, paths, decode_clips)
        for k, ms in zip(repeats, time_items(datasets, decode_clips)):
            item_ms[backend, k] = ms
    rows = []
    for backend in backends:
        for num_workers in workers:
            # the values of k take turns, round after round, and each keeps its median round: a
            # shared machine's drift and stalls fall on all of them alike
            rates: dict[int, list[float]] = {k: [] for k in repeats}
            for _ in range(max(rounds, 1)):
                for k in repeats:
                    elapsed, shape, dtype = _time_loader(config(backend, num_workers, k), warmup, batches)
                    rates[k].append(shape[0] * batches / elapsed)
            for k in repeats:
                cfg = config(backend, num_workers, k)
                clips_per_s = statistics.median(rates[k])
                rows.append({"what": "loader", "backend": backend, "workers": num_workers, "batch": shape[0],
                             "repeated_samples": k, "repeat_window": cfg.DATA.REPEATED_SAMPLE_WINDOW,
                             "clips_per_s": clips_per_s, "ms_per_clip": 1000 / clips_per_s,
                             "clips_per_s_rounds": rates[k],
                             "decode_ms_per_clip": decode_ms[backend], "item_ms_per_clip": item_ms[backend, k],
                             "batch_shape": list(shape), "dtype": dtype,
                             "input": [3, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE],
                             "sampling_rate": cfg.DATA.SAMPLING_RATE,
                             "worker_malloc": "reuse" if cfg.DATA_LOADER.MALLOC_REUSE else "system"})
    rows.sort(key=lambda r: (backends.index(r["backend"]), list(repeats).index(r["repeated_samples"]),
                             list(workers).index(r["workers"])))
    return rows


def repeat_speedups(rows: list[dict[str, Any]]) -> list[str]:
    """Lines ``k = K vs 1: X.XXx clips/s`` per backend and worker count (and for one worker's
    item time), for every k measured next to k = 1 in the same run."""
    base = {(r["backend"], r["workers"]): r for r in rows if r["repeated_samples"] == 1}
    lines = []
    for r in rows:
        one = base.get((r["backend"], r["workers"]))
        if one is None or r["repeated_samples"] == 1:
            continue
        lines.append(f"{r['backend']}, {r['workers']} worker(s): k = {r['repeated_samples']} (window "
                     f"{r['repeat_window']:g} spans) vs k = 1: {r['clips_per_s'] / one['clips_per_s']:.2f}x loader "
                     f"clips/s, {one['item_ms_per_clip'] / r['item_ms_per_clip']:.2f}x one worker's clips/s")
    return lines


def workers_to_feed(rows: list[dict[str, Any]], backend: str, clips_per_s: float) -> Optional[int]:
    """Loader workers of ``backend`` needed to deliver ``clips_per_s`` (a training step's appetite).

    One worker delivers ``1000 / item_ms_per_clip`` clips/s (the item time is measured with one
    thread, as in a worker), so the answer is ``ceil(clips_per_s * item_ms / 1000)``; None
    without a row of ``backend``.
    """
    mine = [r for r in rows if r["backend"] == backend and r.get("repeated_samples", 1) == 1]
    if not mine:
        return None
    return max(1, math.ceil(clips_per_s * mine[0]["item_ms_per_clip"] / 1000))


def run_loader(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark the training loader (see the module docstring); returns one row per backend x workers."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="stvit_loader_bench_") as tmp:
        # one epoch holds the warm-up and the timed batches (plus the workers' prefetch); an epoch of
        # repeated sampling takes 1/k of the videos, so the list is k times longer
        clips = (max(args.warmup, 1) + max(args.iters, 1) + 2 * max(args.workers)) * args.batch * max(args.repeats)
        data = args.data or str(write_benchmark_videos(Path(tmp), args.videos,
                                                       repeats=math.ceil(clips / args.videos)))
        return loader_rows(args.cfg, data, backends=args.backends, workers=args.workers, batch=args.batch,
                           warmup=max(args.warmup, 1), batches=max(args.iters, 1), decode_clips=args.decode_clips,
                           repeats=args.repeats, rounds=args.rounds, opts=args.opts)


def format_loader_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    first = rows[0]
    frames, crop = first["input"][1], first["input"][2]
    lines = [f"loader: {args.cfg} train pipeline, {frames} frames x rate {first['sampling_rate']}, crop {crop}, "
             f"batch {first['batch']}, {max(args.iters, 1)} timed batches after {max(args.warmup, 1)} warm-up, "
             f"batches {first['dtype']} {tuple(first['batch_shape'])}, worker malloc {first['worker_malloc']} "
             "(DATA_LOADER.MALLOC_REUSE)",
             f"{'backend':<8s} {'k':>2s} {'decode ms/clip':>14s} {'item ms/clip':>12s} {'workers':>7s} "
             f"{'clips/s':>9s} {'ms/clip':>9s}"]
    for r in rows:
        lines.append(f"{r['backend']:<8s} {r['repeated_samples']:2d} {r['decode_ms_per_clip']:14.1f} "
                     f"{r['item_ms_per_clip']:12.1f} {r['workers']:7d} {r['clips_per_s']:9.2f} {r['ms_per_clip']:9.1f}")
    lines.append("decode: open + decode one clip; item: decode + sampling + augmentation in one thread (one worker), "
                 "per clip; k: DATA.NUM_REPEATED_SAMPLES (clips per decode)")
    lines += repeat_speedups(rows)
    if args.feed:
        for backend in args.backends:
            need = workers_to_feed(rows, backend, args.feed)
            if need is not None:
                lines.append(f"{backend}: {need} worker(s) keep a step of {args.feed:g} clips/s fed")
    if args.peak_tflops:
        lines += feed_projection(rows, args.backends[0], peak_tflops=args.peak_tflops, mfu=args.mfu)
    return "\n".join(lines)


def feed_projection(rows: list[dict[str, Any]], backend: str, *, peak_tflops: float, mfu: float) -> list[str]:
    """A PROJECTION, per full-size registry model: the training step's clips/s on a chip of
    ``peak_tflops`` (dense bf16) at model FLOPs utilisation ``mfu``, and the ``backend`` loader
    workers per GPU that keep it fed, from the measured item time. Not a measurement: a GPU run
    of ``--what train`` replaces the assumed MFU with the real one."""
    from stvit_video.bench.models import model_flops_per_clip
    from stvit_video.models import get_variant, list_variants

    lines = [f"projection (not measured): training clips/s at {100 * mfu:.0f}% MFU of a {peak_tflops:g}-TFLOPs chip, "
             f"and {backend} workers per GPU to feed it at this machine's item time"]
    for name in list_variants():
        variant = get_variant(name)
        if variant.gflops is None or variant.input_size[1:] != (32, 224, 224):
            continue
        clips_per_s = mfu * peak_tflops * 1e12 / model_flops_per_clip(variant.gflops, train=True)
        lines.append(f"  {name:<36s} {variant.gflops:7.2f} GFLOPs  {clips_per_s:7.0f} clips/s  "
                     f"{workers_to_feed(rows, backend, clips_per_s)} workers")
    return lines
