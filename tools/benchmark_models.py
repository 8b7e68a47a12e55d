#!/usr/bin/env python
"""Inference throughput of several model configs, measured side by side in one run.

Every model sees the same input (batch x frames x crop), the same threads and device; timed
forward passes are interleaved round-robin across the models, so drift of the machine (turbo,
other load) hits all of them alike. Prints params, GFLOPs/view (fvcore, attention counted),
clips/s and the ratios to the first config (the baseline).

    python tools/benchmark_models.py                                   # Swin-T vs STViT Swin-T variants
    python tools/benchmark_models.py --cfgs swin_s_32x2 stvit_r_swin_s_perframe_32x2 --iters 5
    python tools/benchmark_models.py --device cuda --amp bf16 --batch 8 DATA.NUM_FRAMES 16
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext

import torch

from stvit_video.config import load_config
from stvit_video.engine.model_report import view_shape
from stvit_video.models import build_model
from stvit_video.utils.flops import count_flops, count_parameters

DEFAULT_CFGS = [
    "kinetics400/swin_t_32x2",
    "kinetics400/stvit_r_swin_t_perframe_32x2",
    "kinetics400/stvit_r_swin_t_spatiotemporal_32x2",
    "kinetics400/stvit_swin_t_perframe_32x2",
    "kinetics400/stvit_swin_t_spatiotemporal_32x2",
]
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfgs", nargs="+", default=DEFAULT_CFGS, help="config names or YAML paths; the first is the baseline")
    p.add_argument("--batch", type=int, default=1, help="clips per forward pass")
    p.add_argument("--iters", type=int, default=3, help="timed forward passes per model")
    p.add_argument("--warmup", type=int, default=1, help="untimed forward passes per model")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none", help="autocast dtype")
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting")
    args, overrides = p.parse_known_args(argv)
    if any(o.startswith("--") for o in overrides):
        p.error(f"unknown options: {[o for o in overrides if o.startswith('--')]}")
    args.overrides = overrides
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = AMP_DTYPES[args.amp]
    rows = []
    for name in args.cfgs:
        cfg = load_config(name, args.overrides)
        model = build_model(cfg).eval()
        shape = view_shape(cfg)
        gflops = None if args.no_flops else count_flops(model, torch.zeros(shape)).total / 1e9
        rows.append(dict(name=name, model=model.to(device), params=count_parameters(model) / 1e6,
                         gflops=gflops, shape=(args.batch, *shape[1:]), times=[]))
    if len({r["shape"] for r in rows}) != 1:
        print("warning: the configs have different view shapes; clips/s are not comparable", file=sys.stderr)
    autocast = torch.autocast(device.type, dtype=amp) if amp is not None else nullcontext()
    with torch.inference_mode(), autocast:
        inputs = {r["name"]: torch.randn(r["shape"], device=device) for r in rows}
        for _ in range(args.warmup):
            for r in rows:
                r["model"](inputs[r["name"]])
        for _ in range(args.iters):
            for r in rows:
                _sync(device)
                start = time.perf_counter()
                r["model"](inputs[r["name"]])
                _sync(device)
                r["times"].append(time.perf_counter() - start)

    base = rows[0]
    base_speed = args.batch / statistics.median(base["times"])
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{args.threads} threads'}), "
          f"amp {args.amp}, batch {args.batch}, input {tuple(base['shape'][1:])}, median of {args.iters} timed passes "
          f"after {args.warmup} warm-up, round-robin")
    print(f"{'config':<48s} {'params':>8s} {'GFLOPs/view':>12s} {'clips/s':>9s} {'ms/clip':>9s} "
          f"{'FLOPs ratio':>12s} {'speed-up':>9s}")
    for r in rows:
        speed = args.batch / statistics.median(r["times"])
        gf = "n/a" if r["gflops"] is None else f"{r['gflops']:.2f}"
        ratio = "n/a" if r["gflops"] is None or base["gflops"] is None else f"{r['gflops'] / base['gflops']:.3f}"
        print(f"{r['name']:<48s} {r['params']:7.2f}M {gf:>12s} {speed:9.3f} {1000 / speed:9.1f} "
              f"{ratio:>12s} {speed / base_speed:8.2f}x")
    print("FLOPs: fvcore, 1 multiply-add = 1 FLOP, attention counted; softmax/GELU not counted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
