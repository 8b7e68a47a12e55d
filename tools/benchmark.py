#!/usr/bin/env python
"""Throughput measured side by side in one run: models (inference or a training step) or the data loader.

Every model gets the same input (batch x frames x crop), threads, device and dtype; after the
warm-up, timed iterations go round-robin over the models, so drift of the machine (turbo, other
load) hits all of them alike. Models come from the registry (no config, so no fvcore needed to
run on a bare GPU box); GFLOPs are fvcore's count when fvcore is installed, else the registry's
reference when the input is the variant's own, else n/a. The first model is the baseline of the
``flops_ratio`` and ``speedup`` columns.

    python tools/benchmark.py --what inference                      # Swin-T vs the STViT Swin-T variants
    python tools/benchmark.py --what train --batch 2 --frames 16
    python tools/benchmark.py --what train --device cuda --dtype bf16 --batch 8 --json bench.json
    python tools/benchmark.py --models swin3d_small stvit_r_swin3d_small_perframe --iters 5
    python tools/benchmark.py --what train --device cuda --dtype bf16 --profile-attention   # which SDPA kernels

A training step is forward, cross-entropy, backward and a fused (on CUDA) AdamW step, as in
:class:`stvit_video.engine.trainer.Trainer`. MFU (CUDA only) = 3 x forward FLOPs x clips/s over
the chip's dense bf16 peak given with ``--peak-tflops``. On the CPU, freed tensor memory is
reused as in ``run_net.py`` CPU runs (:mod:`stvit_video.utils.cpu_malloc`); ``--cpu-malloc system``
measures glibc's default instead, and the table ends with the process's peak resident memory.
``peak_mem_mb`` is per model on both devices: its weights, optimizer state and input plus the
peak of the tensors a step allocates (CUDA: over the timed steps; CPU: the profiler's allocation
records of one extra step).

``--what loader`` times, per decoder backend, decoding one clip and one dataset item in this
process, then the trainer's own training loader (decode, clip sampling, uint8 augmentation,
collation; see :mod:`stvit_video.datasets.throughput`) for each worker count, on ``--data DIR`` (a folder with ``train.csv``) or on generated videos shaped
like Kinetics after ``data_prep resize``; ``--feed CLIPS_PER_S`` (a training step's clips/s from
a model run) adds the workers each backend needs to keep that step fed. It needs the config
and data dependencies (fvcore, decord / PyAV); the model runs need only torch.

    python tools/benchmark.py --what loader --workers 0 1 2 --batch 8 --feed 40
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from typing import Any, Optional

import torch
import torch.nn.functional as F

from stvit_video.models import create_model, get_variant, list_variants
from stvit_video.utils.cpu_malloc import cpu_malloc_mode, keep_freed_cpu_memory

DEFAULT_MODELS = ["swin3d_tiny", "stvit_r_swin3d_tiny_perframe", "stvit_r_swin3d_tiny_spatiotemporal",
                  "stvit_swin3d_tiny_perframe", "stvit_swin3d_tiny_spatiotemporal"]
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--what", choices=("inference", "train", "loader"), default="inference")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list_variants(), metavar="VARIANT",
                   help="registry variants (run_net.py --list-models); the first is the baseline")
    p.add_argument("--batch", type=int, default=1, help="clips per iteration")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--iters", type=int, default=3, help="timed iterations per model")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="autocast dtype (fp16 trains with a GradScaler)")
    p.add_argument("--act-checkpoint", action="store_true", help="activation checkpointing (train)")
    p.add_argument("--compile", action="store_true", help="torch.compile each model")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads (CPU)")
    p.add_argument("--cpu-malloc", choices=("reuse", "system"), default="reuse",
                   help="CPU: reuse freed tensor memory (as run_net.py does with CPU_MALLOC_REUSE True) or "
                        "glibc's default (a fresh, page-faulted mmap per large tensor)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak of the GPU for MFU (e.g. 989 for an H100 SXM)")
    p.add_argument("--json", default=None, help="also write the rows as a JSON list here")
    p.add_argument("--profile-attention", action="store_true",
                   help="after timing, profile one step per model and list the attention kernels it ran "
                        "(math = the unfused fallback)")
    loader = p.add_argument_group("--what loader")
    loader.add_argument("--cfg", default="kinetics400", help="config whose DATA.* and DATA_LOADER.* are used")
    loader.add_argument("--data", default=None, help="folder with train.csv; default: generated videos")
    loader.add_argument("--videos", type=int, default=8, help="videos to generate when --data is not given")
    loader.add_argument("--backends", nargs="+", default=["decord", "pyav"], choices=("decord", "pyav"))
    loader.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="DATA_LOADER.NUM_WORKERS values")
    loader.add_argument("--decode-clips", type=int, default=20, help="clips timed for decode and item ms/clip")
    loader.add_argument("--feed", type=float, default=None,
                        help="clips/s of a training step: print the workers each backend needs for it")
    loader.add_argument("--opts", nargs="*", default=[], help="further KEY VALUE config overrides")
    return p.parse_args(argv)


def _gflops(name: str, model: torch.nn.Module, shape: tuple[int, ...]) -> Optional[float]:
    """GFLOPs per clip: fvcore when installed, else the registry's figure for the variant's own input."""
    try:
        from stvit_video.utils.flops import count_flops
    except ImportError:
        variant = get_variant(name)
        return variant.gflops if tuple(shape[1:]) == variant.input_size else None
    return count_flops(model, torch.zeros(1, *shape[1:])).total / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Runner:
    """One model and its step (inference or training) on fixed random inputs."""

    def __init__(self, name: str, args: argparse.Namespace, device: torch.device) -> None:
        self.name = name
        shape = (args.batch, 3, args.frames, args.crop, args.crop)
        model = create_model(name, num_classes=args.num_classes)
        self.params_m = sum(p.numel() for p in model.parameters()) / 1e6
        self.gflops = _gflops(name, model, shape)
        if args.act_checkpoint:
            model.set_grad_checkpointing(True)
        self.model = model.to(device).train(args.what == "train")
        self.step_fn = torch.compile(self.model) if args.compile else self.model
        self.train = args.what == "train"
        self.dtype = DTYPES[args.dtype]
        self.device = device
        self.x = torch.randn(shape, device=device)
        self.y = torch.randint(args.num_classes, (args.batch,), device=device)
        if self.train:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=device.type == "cuda")
            self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        self.times: list[float] = []
        self.cuda_peak_mb: Optional[float] = None

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self) -> None:
        if not self.train:
            with torch.inference_mode(), self._autocast():
                self.step_fn(self.x)
            return
        with self._autocast():
            loss = F.cross_entropy(self.step_fn(self.x).float(), self.y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def resident_bytes(self) -> int:
        """Bytes this model holds between steps: weights, buffers, optimizer state, its input."""
        tensors = [*self.model.parameters(), *self.model.buffers(), self.x, self.y]
        if self.train:
            tensors += [t for state in self.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    def timed_step(self) -> None:
        """One step, timed; on CUDA it also records the step's peak memory (see :meth:`measure_peak_mb`)."""
        _sync(self.device)
        if self.device.type == "cuda":
            before = torch.cuda.memory_allocated(self.device)  # every runner's weights live on the device
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        self.step()
        _sync(self.device)
        self.times.append(time.perf_counter() - start)
        if self.device.type == "cuda":
            step_peak = torch.cuda.max_memory_allocated(self.device) - before
            self.cuda_peak_mb = max(self.cuda_peak_mb or 0.0, (self.resident_bytes() + step_peak) / 2**20)

    def measure_peak_mb(self) -> Optional[float]:
        """Memory this model's step needs: :meth:`resident_bytes` plus the peak of what the step
        allocates on top (CUDA: over the timed steps; CPU: one profiled step). None if unknown."""
        if self.device.type == "cuda":
            return self.cuda_peak_mb
        if self.device.type != "cpu":
            return None
        resident = self.resident_bytes()
        step_peak = _profiled_peak_bytes(self.step)
        return None if step_peak is None else (resident + step_peak) / 2**20


def _profiled_peak_bytes(fn) -> Optional[int]:
    """Peak of the bytes that ``fn()`` allocated and had not yet freed, from the profiler's
    allocation records (CPU tensors have no max_memory_allocated); None where this torch's
    profiler does not expose them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        from torch._C._profiler import _EventType

        allocations, pending = [], list(prof.profiler.kineto_results.experimental_event_tree())
        while pending:
            event = pending.pop()
            if event.tag == _EventType.Allocation:
                allocations.append((event.start_time_ns, event.extra_fields.alloc_size))  # frees are negative
            pending.extend(event.children)
    except (AttributeError, ImportError):
        return None
    live = peak = 0
    for _, size in sorted(allocations, key=lambda a: a[0]):
        live += size
        peak = max(peak, live)
    return peak


# SDPA kernels by the profiler's op name: what a step's attention actually ran on
ATTENTION_KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cuDNN",
    "aten::_scaled_dot_product_attention_math": "math",
}


def attention_kernels(runner: "_Runner") -> dict[str, int]:
    """Calls of each SDPA kernel in one step of ``runner`` (forward, and backward when training)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if runner.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        runner.step()
        _sync(runner.device)
    counts: dict[str, int] = {}
    for event in prof.key_averages():
        kind = ATTENTION_KERNELS.get(event.key)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + event.count
    return counts


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark ``args.models``; returns one row per model (see the module docstring)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and args.cpu_malloc == "reuse":
        keep_freed_cpu_memory()
    runners = [_Runner(name, args, device) for name in args.models]
    for _ in range(args.warmup):
        for r in runners:
            r.step()
    for _ in range(args.iters):
        for r in runners:
            r.timed_step()
    rows = []
    base = runners[0]
    base_speed = args.batch / statistics.median(base.times)
    for r in runners:
        speed = args.batch / statistics.median(r.times)
        row = {
            "config": r.name, "what": args.what, "params_m": r.params_m, "gflops": r.gflops,
            "clips_per_s": speed, "ms_per_iter": 1000 * statistics.median(r.times),
            "peak_mem_mb": r.measure_peak_mb(), "flops_ratio": (r.gflops / base.gflops
                                                              if r.gflops and base.gflops else None),
            "speedup": speed / base_speed, "batch": args.batch, "input": [3, args.frames, args.crop, args.crop],
            "device": str(device), "dtype": args.dtype, "act_checkpoint": args.act_checkpoint,
            "compile": args.compile, "cpu_malloc": cpu_malloc_mode() if device.type == "cpu" else None,
        }
        if args.profile_attention:
            row["attention_kernels"] = attention_kernels(r)
        if args.peak_tflops and r.gflops and device.type == "cuda":
            factor = 3 if args.what == "train" else 1  # forward + backward = 3 x forward FLOPs
            row["mfu"] = factor * r.gflops * 1e9 * speed / (args.peak_tflops * 1e12)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {args.threads} threads, malloc {cpu_malloc_mode()}")
    lines = [f"{args.what}: {where}, {args.dtype}, batch {args.batch}, input {args.frames}x{args.crop}x{args.crop}, "
             f"median of {args.iters} round-robin iterations after {args.warmup} warm-up"
             + (", activation checkpointing" if args.act_checkpoint else "") + (", torch.compile" if args.compile else ""),
             f"{'model':<36s} {'params':>8s} {'GFLOPs':>8s} {'clips/s':>9s} {'ms/iter':>9s} {'peak MB':>8s} "
             f"{'FLOPs ratio':>11s} {'speed-up':>8s}" + ("   MFU" if args.peak_tflops and device.type == "cuda" else "")]
    for r in rows:
        fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
        lines.append(f"{r['config']:<36s} {r['params_m']:7.2f}M {fmt(r['gflops'], '8.2f'):>8s} "
                     f"{r['clips_per_s']:9.3f} {r['ms_per_iter']:9.1f} {fmt(r['peak_mem_mb'], '8.0f'):>8s} "
                     f"{fmt(r['flops_ratio'], '11.3f'):>11s} {r['speedup']:7.2f}x"
                     + (f" {100 * r['mfu']:5.1f}%" if r.get("mfu") is not None else ""))
    lines.append("GFLOPs per clip: fvcore (else the registry's reference), 1 multiply-add = 1 FLOP, attention "
                 "counted; softmax/GELU not counted")
    lines.append("peak MB: the model's weights, optimizer state and input plus the peak of the tensors one step "
                 "allocates" + (" (CPU: one extra, profiled step)" if device.type == "cpu" else ""))
    if device.type == "cpu" and sys.platform.startswith("linux"):
        import resource

        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        lines.append(f"peak resident memory of this process (all models): {rss_gb:.2f} GB")
    for r in rows:
        if "attention_kernels" in r:
            kernels = ", ".join(f"{k} x{n}" for k, n in sorted(r["attention_kernels"].items())) or "none"
            lines.append(f"attention kernels, {r['config']}: {kernels}")
    return "\n".join(lines)


def run_loader(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark the training loader (see the module docstring); returns one row per backend x workers."""
    import tempfile
    from pathlib import Path

    from stvit_video.datasets.throughput import loader_rows, write_benchmark_videos

    with tempfile.TemporaryDirectory(prefix="stvit_loader_bench_") as tmp:
        # one epoch holds the warm-up and the timed batches (plus the workers' prefetch)
        clips = (max(args.warmup, 1) + max(args.iters, 1) + 2 * max(args.workers)) * args.batch
        data = args.data or str(write_benchmark_videos(Path(tmp), args.videos,
                                                       repeats=math.ceil(clips / args.videos)))
        return loader_rows(args.cfg, data, backends=args.backends, workers=args.workers, batch=args.batch,
                           warmup=max(args.warmup, 1), batches=max(args.iters, 1), decode_clips=args.decode_clips,
                           opts=args.opts)


def format_loader_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    from stvit_video.datasets.throughput import workers_to_feed

    first = rows[0]
    frames, crop = first["input"][1], first["input"][2]
    lines = [f"loader: {args.cfg} train pipeline, {frames} frames x rate {first['sampling_rate']}, crop {crop}, "
             f"batch {first['batch']}, {max(args.iters, 1)} timed batches after {max(args.warmup, 1)} warm-up, "
             f"batches {first['dtype']} {tuple(first['batch_shape'])}",
             f"{'backend':<8s} {'decode ms/clip':>14s} {'item ms/clip':>12s} {'workers':>7s} {'clips/s':>9s} "
             f"{'ms/clip':>9s}"]
    for r in rows:
        lines.append(f"{r['backend']:<8s} {r['decode_ms_per_clip']:14.1f} {r['item_ms_per_clip']:12.1f} "
                     f"{r['workers']:7d} {r['clips_per_s']:9.2f} {r['ms_per_clip']:9.1f}")
    lines.append("decode: open + decode one clip; item: decode + sampling + augmentation in one thread (one worker)")
    if args.feed:
        for backend in args.backends:
            need = workers_to_feed(rows, backend, args.feed)
            if need is not None:
                lines.append(f"{backend}: {need} worker(s) keep a step of {args.feed:g} clips/s fed")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.what == "loader":
        rows = run_loader(args)
        print(format_loader_table(rows, args))
    else:
        rows = run(args)
        print(format_table(rows, args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
