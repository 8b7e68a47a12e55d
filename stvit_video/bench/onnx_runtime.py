"""ONNX Runtime against eager PyTorch on the CPU, measured side by side in one run (``--what onnx``).

Each model of the registry (random init, ``--num-classes``) is wrapped as ``tools/export.py`` wraps a
checkpoint's (:class:`~stvit_video.engine.export.NormalizedClassifier`: uint8 frames in, the
normalisation inside, logits out), exported to ONNX with a dynamic batch
(:func:`~stvit_video.engine.export_onnx.to_onnx`, from an example of batch + 1 clips, so the timed
batch is not the traced one) and loaded into an ONNX Runtime CPU session with torch's intra-op
thread count and one inter-op thread. ONNX Runtime's idle workers do not busy-wait here
(``--ort-spinning`` turns its default back on): two thread pools in one process, each spinning
after its step, would take cores from the other runtime's next step. Both runtimes get the same
uint8 clips; after the warm-up, timed iterations go round-robin over every (model, runtime)
pair, so drift of the machine hits all of them alike. Each row holds the median clips/s, the
speed-up over eager PyTorch for its model, and the max |ONNX Runtime - eager| of the logits on
the timed clips.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from stvit_video.bench.models import time_round_robin
from stvit_video.engine.export_onnx import OnnxRuntimeModel, check_opset, onnx_versions, to_onnx
from stvit_video.models import create_model, get_variant
from stvit_video.utils.cpu_malloc import cpu_malloc_mode, keep_freed_cpu_memory

__all__ = ["ONNX_MODELS", "format_onnx_table", "run_onnx"]

ONNX_MODELS = ["swin3d_tiny", "stvit_r_swin3d_tiny_perframe"]


@dataclass
class _Timed:
    """One (model, runtime) pair: its step on fixed clips and the times of its timed steps."""

    config: str
    runtime: str  # "eager" or "onnxruntime"
    step: Callable[[], torch.Tensor]
    times: list[float] = field(default_factory=list)

    def timed_step(self) -> None:
        start = time.perf_counter()
        self.step()
        self.times.append(time.perf_counter() - start)


def _eager(module: torch.nn.Module, frames: torch.Tensor) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        with torch.inference_mode():
            return module(frames)
    return step


def run_onnx(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark ``args.models`` in eager PyTorch and ONNX Runtime; two rows per model, eager first."""
    # imported here: engine.export brings the checkpoint and dataset modules (and fvcore) along,
    # which tools/benchmark.py --help and the other modes do without
    from stvit_video.engine.export import NormalizedClassifier

    torch.set_num_threads(args.threads)
    if args.cpu_malloc == "reuse":
        keep_freed_cpu_memory()
    opset = check_opset(args.opset)
    versions = onnx_versions()
    clip = (3, args.frames, args.crop, args.crop)
    timed: list[_Timed] = []
    facts: dict[str, dict[str, Any]] = {}
    for name in args.models:
        torch.manual_seed(0)
        variant = get_variant(name)  # its own normalisation, as a checkpoint of it would record
        wrapped = NormalizedClassifier(create_model(name, num_classes=args.num_classes), variant.mean, variant.std).eval()
        example = torch.randint(0, 256, (args.batch + 1, *clip), dtype=torch.uint8)
        frames = torch.randint(0, 256, (args.batch, *clip), dtype=torch.uint8)
        start = time.perf_counter()
        onnx_bytes = to_onnx(wrapped, example, opset=opset)
        export_s = time.perf_counter() - start
        session = OnnxRuntimeModel(onnx_bytes, threads=args.threads, spinning=args.ort_spinning)
        eager = _eager(wrapped, frames)
        diff = (session(frames) - eager()).abs().max().item()
        facts[name] = {"params_m": sum(p.numel() for p in wrapped.parameters()) / 1e6, "export_s": export_s,
                       "onnx_mb": len(onnx_bytes) / 2**20, "max_abs_diff": diff}
        del onnx_bytes  # the session holds its own copy of the weights
        timed += [_Timed(name, "eager", eager), _Timed(name, "onnxruntime", lambda s=session, f=frames: s(f))]
    time_round_robin(timed, warmup=args.warmup, iters=args.iters)
    eager_speed = {t.config: args.batch / statistics.median(t.times) for t in timed if t.runtime == "eager"}
    rows = []
    for t in timed:
        speed = args.batch / statistics.median(t.times)
        rows.append({
            "config": t.config, "what": "onnx", "runtime": t.runtime, "clips_per_s": speed,
            "ms_per_iter": 1000 * statistics.median(t.times), "speedup": speed / eager_speed[t.config],
            **facts[t.config], "opset": opset, "batch": args.batch, "input": list(clip), "device": "cpu",
            "dtype": "fp32", "threads": args.threads, "ort_spinning": args.ort_spinning,
            "cpu_malloc": cpu_malloc_mode(), "torch": torch.__version__,
            "onnxruntime": versions["onnxruntime"],
        })
    return rows


def format_onnx_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    spinning = "spinning" if args.ort_spinning else "no spinning"
    lines = [f"onnx: CPU, {args.threads} threads (ONNX Runtime: {args.threads} intra-op, 1 inter-op, {spinning}), "
             f"malloc {cpu_malloc_mode()}, fp32, batch {args.batch}, "
             f"input {args.frames}x{args.crop}x{args.crop} uint8, "
             f"opset {rows[0]['opset'] if rows else args.opset}, median of {args.iters} round-robin iterations "
             f"after {args.warmup} warm-up; torch {torch.__version__}, onnxruntime "
             f"{rows[0]['onnxruntime'] if rows else 'n/a'}",
             f"{'model':<36s} {'runtime':<12s} {'params':>8s} {'clips/s':>9s} {'ms/iter':>9s} {'vs eager':>8s} "
             f"{'max|diff|':>9s} {'export s':>8s} {'ONNX MB':>8s}"]
    for r in rows:
        line = (f"{r['config']:<36s} {r['runtime']:<12s} {r['params_m']:7.2f}M {r['clips_per_s']:9.3f} "
                f"{r['ms_per_iter']:9.1f} {r['speedup']:7.2f}x")
        if r["runtime"] == "onnxruntime":  # the export's facts, once per model
            line += f" {r['max_abs_diff']:9.2g} {r['export_s']:8.1f} {r['onnx_mb']:8.1f}"
        lines.append(line)
    lines.append("max|diff|: the largest |ONNX Runtime - eager| of the logits on the timed clips; export s: "
                 "torch.export + ONNX conversion")
    return "\n".join(lines)
