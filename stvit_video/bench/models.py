"""Model throughput measured side by side in one run: inference or a training step.

Every model gets the same input (batch x frames x crop), threads, device and dtype; after the
warm-up, timed iterations go round-robin over the models, so drift of the machine (turbo, other
load) hits all of them alike. Models come from the registry (no config, so no fvcore needed to
run on a bare GPU box); GFLOPs are fvcore's count when fvcore is installed, else the registry's
reference when the input is the variant's own, else n/a. The first model is the baseline of the
``flops_ratio`` and ``speedup`` columns.

A training step is the trainer's own :class:`~stvit_video.engine.train_loop.StepFunction`
(forward under autocast, cross-entropy, backward, fp16 loss scaling, the optimizer step) with a
fused (on CUDA) AdamW. MFU (CUDA only) = 2 x 3 x forward multiply-adds x clips/s over the chip's
dense bf16 peak given with ``--peak-tflops`` (our GFLOPs count one multiply-add as one FLOP, as
fvcore does; a chip's peak counts it as two; a training step is forward + backward = 3 x
forward). On the CPU, freed tensor memory is reused as in ``run_net.py`` CPU runs
(:mod:`stvit_video.utils.cpu_malloc`); ``--cpu-malloc system`` measures glibc's default
instead, and the table ends with the process's peak resident memory. ``peak_mem_mb`` is per
model on both devices: its weights, optimizer state and input plus the peak of the tensors a
step allocates (CUDA: over the timed steps; CPU: the profiler's allocation records of one extra
step).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Optional, Sequence

import torch

from stvit_video.engine.train_loop import StepFunction, autocast_or_fp32
from stvit_video.models import create_model, get_variant
from stvit_video.utils.cpu_malloc import cpu_malloc_mode, keep_freed_cpu_memory

__all__ = ["ATTENTION_KERNELS", "DEFAULT_MODELS", "DTYPES", "attention_kernels", "format_table", "model_flops_per_clip",
           "run", "time_round_robin"]

DEFAULT_MODELS = ["swin3d_tiny", "stvit_r_swin3d_tiny_perframe", "stvit_r_swin3d_tiny_spatiotemporal",
                  "stvit_swin3d_tiny_perframe", "stvit_swin3d_tiny_spatiotemporal", "tome_swin3d_tiny"]
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
            self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
            self.train_step = StepFunction(self.step_fn, self.optimizer, device_type=device.type, amp_dtype=self.dtype,
                                           scaler=self.scaler)
        self.times: list[float] = []
        self.cuda_peak_mb: Optional[float] = None

    def step(self) -> None:
        if self.train:
            self.train_step(self.x, self.y)  # the trainer's own step
            return
        with torch.inference_mode(), autocast_or_fp32(self.device.type, self.dtype):
            self.step_fn(self.x)

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


def model_flops_per_clip(gmacs: float, *, train: bool) -> float:
    """FLOPs of one clip as a chip's peak counts them: 2 per multiply-add (our GFLOPs are fvcore's
    multiply-adds), x 3 for a training step (forward + backward)."""
    return 2 * (3 if train else 1) * gmacs * 1e9


def time_round_robin(timers: Sequence[Any], *, warmup: int, iters: int) -> None:
    """``warmup`` untimed, then ``iters`` timed iterations of every timer in turn (each has
    ``step()`` and ``timed_step()``), so what slows the machine slows every model alike and the
    ratios are measured side by side."""
    for _ in range(warmup):
        for t in timers:
            t.step()
    for _ in range(iters):
        for t in timers:
            t.timed_step()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark ``args.models``; returns one row per model (see the module docstring)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and args.cpu_malloc == "reuse":
        keep_freed_cpu_memory()
    runners = [_Runner(name, args, device) for name in args.models]
    time_round_robin(runners, warmup=args.warmup, iters=args.iters)
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
            row["mfu"] = model_flops_per_clip(r.gflops, train=args.what == "train") * speed / (args.peak_tflops * 1e12)
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


