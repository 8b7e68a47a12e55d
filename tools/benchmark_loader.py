#!/usr/bin/env python
"""Data-loader benchmark: clips/s of the real DataLoader and decode ms per clip, per backend.

    python tools/benchmark_loader.py --cfg kinetics400/swin_t_32x2 DATA.PATH_TO_DATA_DIR /data/k400
    python tools/benchmark_loader.py --synthetic 32 DATA_LOADER.NUM_WORKERS 2 TRAIN.BATCH_SIZE 8

For every backend (``--backends``, default decord and pyav) it reports, on the same videos:

- loader clips/s: batches of ``--split`` drawn from ``construct_loader`` (workers, decoding,
  transforms, collate; ``DATA_LOADER.NUM_WORKERS`` workers) after ``BENCHMARK.WARMUP_ITERS``
  untimed batches, over ``BENCHMARK.NUM_ITERS`` batches (epochs wrap around);
- decode ms/clip: open + decode of one random training clip's frames in this process, one
  thread, no transform: the decoder's own cost;
- item ms/clip: one ``dataset[i]`` of ``--split`` in this process, one torch thread
  (decode + clip sampling + transforms): what one worker spends per clip.

The single-process timings run first, then the loaders, one backend at a time, so no
workers compete with them.

Without ``DATA.PATH_TO_DATA_DIR`` (or with ``--synthetic N``) it first writes N h264 videos
(default 320x240, 30 fps, 10 s, keyframe every 250 frames as x264 does by default, an AAC
track, textured content) to a temporary folder and removes them afterwards.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=None, help="config name or YAML path (default: the defaults)")
    parser.add_argument("--backends", nargs="+", default=["decord", "pyav"], choices=["decord", "pyav"])
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="write N synthetic videos and use them (default when DATA.PATH_TO_DATA_DIR is empty: 16)")
    parser.add_argument("--size", default="320x240", help="synthetic video WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=10.0, help="synthetic video length")
    parser.add_argument("--fps", type=int, default=30, help="synthetic video frame rate")
    parser.add_argument("--gop", type=int, default=250, help="synthetic video keyframe interval (frames)")
    parser.add_argument("--decode-clips", type=int, default=20, help="clips timed for decode ms/clip")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def write_synthetic(folder: Path, count: int, size: str, seconds: float, fps: int, gop: int,
                    num_classes: int) -> None:
    from stvit_video.datasets.synthetic import VideoSpec, write_video

    width, height = (int(v) for v in size.lower().split("x"))
    spec = VideoSpec(width, height, int(round(seconds * fps)), fps, "h264", audio=True, gop=gop, texture=True)
    rows = [f"{write_video(folder / f'video_{i:04d}.mp4', spec)} {i % num_classes}\n" for i in range(count)]
    for split in ("train", "val", "test"):
        (folder / f"{split}.csv").write_text("".join(rows))


def time_decode(cfg, backend: str, paths: list[str], clips: int) -> float:
    """Mean ms to open a video and decode one random training clip, in this process."""
    from stvit_video.datasets.clip_sampling import ClipSpec, random_clip
    from stvit_video.datasets.decoder import open_video

    spec = ClipSpec(cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for path in itertools.islice(itertools.cycle(paths), clips):
        with open_video(path, backend) as video:
            video.get_frames(random_clip(spec, video.num_frames, video.fps, generator).indices)
    return (time.perf_counter() - start) / clips * 1000


def time_items(dataset, clips: int) -> float:
    """Mean ms of ``dataset[i]`` (decode + transform) in this process with one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        start = time.perf_counter()
        for i in itertools.islice(itertools.cycle(range(len(dataset))), clips):
            dataset[i]
        return (time.perf_counter() - start) / clips * 1000
    finally:
        torch.set_num_threads(threads)


def time_loader(cfg, split: str) -> tuple[float, int]:
    """(clips/s, clips timed) of the DataLoader of ``split``."""
    from stvit_video.datasets import construct_loader

    loader = construct_loader(cfg, split)
    if len(loader) == 0:
        raise SystemExit(f"the {split} loader has no full batch: fewer videos than the per-process batch "
                         f"{loader.batch_size}; lower TRAIN.BATCH_SIZE or use more videos")
    batches = (batch for _ in itertools.count() for batch in loader)  # wrap around epochs
    for _ in range(cfg.BENCHMARK.WARMUP_ITERS):
        next(batches)
    clips, start = 0, time.perf_counter()
    for _ in range(cfg.BENCHMARK.NUM_ITERS):
        clips += next(batches).frames.shape[0]
    elapsed = time.perf_counter() - start
    batches.close()  # stop the workers before the next backend starts its own
    del batches, loader
    gc.collect()
    return clips / elapsed, clips


def main(argv: list[str] | None = None) -> int:
    from stvit_video.config import load_config
    from stvit_video.utils.logging import setup_logging

    args = parse_args(argv)
    setup_logging()
    base = load_config(args.cfg, args.opts)
    temp_dir = None
    data_dir = base.DATA.PATH_TO_DATA_DIR
    if args.synthetic or not data_dir:
        count = args.synthetic or 16
        temp_dir = Path(tempfile.mkdtemp(prefix="stvit_bench_"))
        start = time.perf_counter()
        write_synthetic(temp_dir, count, args.size, args.seconds, args.fps, args.gop, base.MODEL.NUM_CLASSES)
        print(f"wrote {count} synthetic videos ({args.size}, {args.fps} fps, {args.seconds:g} s, "
              f"h264 keyframe every {args.gop} frames, AAC) in {time.perf_counter() - start:.1f} s")
        data_dir = str(temp_dir)
    try:
        from stvit_video.datasets import build_dataset

        cfgs = {b: load_config(args.cfg, [*args.opts, "DATA.PATH_TO_DATA_DIR", data_dir, "DATA.DECODING_BACKEND", b])
                for b in args.backends}
        single = {}
        for backend, cfg in cfgs.items():
            dataset = build_dataset(cfg, args.split)
            paths = [v.path for v in dataset.videos]
            time_decode(cfg, backend, paths[:1], 1)  # warm the file cache and the imports
            single[backend] = (time_decode(cfg, backend, paths, args.decode_clips),
                               time_items(dataset, args.decode_clips))
        results = [(b, *time_loader(cfg, args.split), *single[b]) for b, cfg in cfgs.items()]
        cfg = cfgs[args.backends[0]]
        crop = cfg.DATA.TRAIN_CROP_SIZE if args.split == "train" else cfg.DATA.TEST_CROP_SIZE
        print(f"\n{args.split} clips of {cfg.DATA.NUM_FRAMES}x{cfg.DATA.SAMPLING_RATE} at {cfg.DATA.TARGET_FPS} fps, "
              f"crop {crop}, {cfg.DATA_LOADER.NUM_WORKERS} workers, {os.cpu_count()} CPUs, "
              f"batch {cfg.TRAIN.BATCH_SIZE if args.split == 'train' else cfg.TEST.BATCH_SIZE}")
        print(f"{'backend':<8} {'loader clips/s':>15} {'clips timed':>12} {'decode ms/clip':>15} {'item ms/clip':>13}")
        for backend, clips_per_s, clips, decode_ms, item_ms in results:
            print(f"{backend:<8} {clips_per_s:>15.2f} {clips:>12d} {decode_ms:>15.1f} {item_ms:>13.1f}")
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
