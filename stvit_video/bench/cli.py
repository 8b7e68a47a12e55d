"""Command line of ``tools/benchmark.py``: throughput measured side by side, models or the loader.

    python tools/benchmark.py --what inference                      # Swin-T vs the STViT Swin-T variants
    python tools/benchmark.py --what onnx                           # ONNX Runtime vs eager, CPU, Swin-T, STViT-R-T
    python tools/benchmark.py --what onnx --models swin3d_demo stvit_r_swin3d_demo_perframe --frames 8 --crop 56
    python tools/benchmark.py --what train --batch 2 --frames 16
    python tools/benchmark.py --what train --device cuda --dtype bf16 --batch 8 --json bench.json
    python tools/benchmark.py --models swin3d_small stvit_r_swin3d_small_perframe --iters 5
    python tools/benchmark.py --what train --device cuda --dtype bf16 --profile-attention   # which SDPA kernels
    python tools/benchmark.py --what loader --workers 0 1 2 --batch 8 --feed 40
    python tools/benchmark.py --what loader --backends decord --workers 1 2 --batch 8 --repeats 1 2
    python tools/benchmark.py --what list-memory --rows 650000 --workers 2          # loader workers' memory

Models: :mod:`stvit_video.bench.models`; ONNX Runtime: :mod:`stvit_video.bench.onnx_runtime`; the
loader: :mod:`stvit_video.bench.loader`.
"""
from __future__ import annotations

import argparse
import json
from typing import Optional

import torch

from stvit_video.bench.models import DEFAULT_MODELS, DTYPES
from stvit_video.bench.onnx_runtime import ONNX_MODELS
from stvit_video.engine.export_onnx import DEFAULT_OPSET
from stvit_video.models import list_variants
from stvit_video.utils.video_formats import DECODER_BACKENDS

__all__ = ["main", "parse_args"]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="benchmark.py")
    p.add_argument("--what", choices=("inference", "train", "onnx", "loader", "list-memory"), default="inference",
                   help="onnx: ONNX Runtime against eager PyTorch, inference on the CPU")
    p.add_argument("--models", nargs="+", default=None, choices=list_variants(), metavar="VARIANT",
                   help="registry variants (run_net.py --list-models); the first is the baseline; default: "
                        f"{' '.join(DEFAULT_MODELS)} (onnx: {' '.join(ONNX_MODELS)})")
    p.add_argument("--batch", type=int, default=1, help="clips per iteration")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--iters", type=int, default=3, help="timed iterations per model")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per model")
    p.add_argument("--device", default=None, help="default: cuda when available (onnx: cpu, the only one it runs on)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="autocast dtype (fp16 trains with a GradScaler)")
    p.add_argument("--act-checkpoint", action="store_true", help="activation checkpointing (train)")
    p.add_argument("--compile", action="store_true", help="torch.compile each model")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads (CPU)")
    p.add_argument("--cpu-malloc", choices=("reuse", "system"), default="reuse",
                   help="CPU: reuse freed tensor memory (as run_net.py does with CPU_MALLOC_REUSE True) or "
                        "glibc's default (a fresh, page-faulted mmap per large tensor)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak of the GPU for MFU (e.g. 989 for an H100 SXM)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (--what onnx)")
    p.add_argument("--ort-spinning", action="store_true",
                   help="--what onnx: let ONNX Runtime's idle threads busy-wait (its default; off here so that "
                        "they do not take the cores of the eager steps between)")
    p.add_argument("--json", default=None, help="also write the rows as a JSON list here")
    p.add_argument("--profile-attention", action="store_true",
                   help="after timing, profile one step per model and list the attention kernels it ran "
                        "(math = the unfused fallback)")
    loader = p.add_argument_group("--what loader")
    loader.add_argument("--cfg", default="kinetics400", help="config whose DATA.* and DATA_LOADER.* are used")
    loader.add_argument("--data", default=None, help="folder with train.csv; default: generated videos")
    loader.add_argument("--videos", type=int, default=8, help="videos to generate when --data is not given")
    loader.add_argument("--backends", nargs="+", default=list(DECODER_BACKENDS), choices=DECODER_BACKENDS)
    loader.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="DATA_LOADER.NUM_WORKERS values")
    loader.add_argument("--repeats", nargs="+", type=int, default=[1],
                        help="DATA.NUM_REPEATED_SAMPLES values, measured side by side (e.g. 1 2)")
    loader.add_argument("--rounds", type=int, default=3,
                        help="loader timings per (backend, workers, k): the k values take turns, medians kept")
    loader.add_argument("--decode-clips", type=int, default=20, help="clips timed for decode ms/clip, and items timed per k for item ms/clip")
    loader.add_argument("--feed", type=float, default=None,
                        help="clips/s of a training step: print the workers each backend needs for it")
    loader.add_argument("--opts", nargs="*", default=[], help="further KEY VALUE config overrides")
    loader.add_argument("--mfu", type=float, default=0.35,
                        help="with --peak-tflops: the model FLOPs utilisation the per-model feed projection assumes")
    loader.add_argument("--rows", type=int, default=650_000,
                        help="--what list-memory: rows of the generated list (Kinetics-700: about 650k)")
    args = p.parse_args(argv)
    if args.what == "onnx":
        # ONNX Runtime's CPU execution provider, fp32, the model as exported: nothing else to compare
        if args.device not in (None, "cpu") or args.dtype != "fp32" or args.compile or args.act_checkpoint:
            p.error("--what onnx compares fp32 inference on the CPU: leave out --device, --dtype, --compile "
                    "and --act-checkpoint")
        args.device = "cpu"
    elif args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.models is None:
        args.models = list(ONNX_MODELS if args.what == "onnx" else DEFAULT_MODELS)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.what == "loader":
        from stvit_video.bench.loader import format_loader_table, run_loader  # config and decoders needed here only

        rows = run_loader(args)
        print(format_loader_table(rows, args))
    elif args.what == "list-memory":
        from stvit_video.bench.list_memory import STORAGES, format_list_memory_table, worker_growth

        rows = [worker_growth(args.rows, storage, workers=max(max(args.workers), 1)) for storage in STORAGES]
        print(format_list_memory_table(rows))
    elif args.what == "onnx":
        from stvit_video.bench.onnx_runtime import format_onnx_table, run_onnx

        rows = run_onnx(args)
        print(format_onnx_table(rows, args))
    else:
        from stvit_video.bench.models import format_table, run

        rows = run(args)
        print(format_table(rows, args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


