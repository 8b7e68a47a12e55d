"""Human-readable model reports for ``--summary`` and ``--flops``."""
from __future__ import annotations

from typing import Any

import torch

from stvit_video.engine.model_setup import build_initialised_model
from stvit_video.models import build_model
from stvit_video.utils.flops import NOT_COUNTED, count_flops, count_parameters
from stvit_video.utils.view_grid import views_per_video


def view_shape(cfg: Any) -> tuple[int, int, int, int, int]:
    """Input of one test view: (1, C, DATA.NUM_FRAMES, TEST_CROP_SIZE, TEST_CROP_SIZE)."""
    side = cfg.DATA.TEST_CROP_SIZE
    return (1, cfg.DATA.INPUT_CHANNEL_NUM, cfg.DATA.NUM_FRAMES, side, side)


def summary(cfg: Any) -> str:
    """Module tree plus parameter counts; loads TRAIN.CHECKPOINT_FILE_PATH first if set, so a
    checkpoint can be checked against a config without training."""
    model = build_initialised_model(cfg)
    lines = [repr(model), "", f"model: {cfg.MODEL.ARCH} ({type(model).__name__})"]
    parts = [("patch_embed", model.patch_embed)]
    parts += [(f"stage {i + 1}", layer) for i, layer in enumerate(model.layers)]
    parts += [("norm", model.norm), ("head", model.head)]
    for name, part in parts:
        lines.append(f"  {name:<12s} {count_parameters(part) / 1e6:8.3f} M parameters")
    lines.append(f"  {'total':<12s} {count_parameters(model) / 1e6:8.3f} M parameters "
                 f"({count_parameters(model, trainable_only=True) / 1e6:.3f} M trainable)")
    return "\n".join(lines)


def flops_table(cfg: Any) -> str:
    """Parameters and GFLOPs per view and per video, with a per-stage breakdown."""
    model = build_model(cfg)
    shape = view_shape(cfg)
    report = count_flops(model, torch.zeros(shape))
    views = views_per_video(cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS)
    rows = [("patch_embed", "patch_embed")]
    rows += [(f"stage {i + 1}", f"layers.{i}") for i in range(len(model.layers))]
    rows += [("final norm", "norm"), ("head", "head")]
    lines = [
        f"model: {cfg.MODEL.ARCH} ({type(model).__name__}), {count_parameters(model) / 1e6:.2f} M parameters",
        f"view: {shape[2]} frames x {shape[3]} x {shape[4]} (batch 1)",
        f"{'part':<12s} {'GFLOPs':>9s}",
    ]
    for label, module in rows:
        lines.append(f"{label:<12s} {report.gflops(module):9.2f}")
    lines += [
        f"{'per view':<12s} {report.total / 1e9:9.2f}",
        f"{'per video':<12s} {report.total * views / 1e9:9.2f}  "
        f"({cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x {cfg.TEST.NUM_SPATIAL_CROPS} crops = {views} views)",
        "counter: fvcore, 1 multiply-add = 1 FLOP, scaled_dot_product_attention counted by our handler",
        f"not counted: {NOT_COUNTED}",
    ]
    if report.uncounted_ops:  # ops fvcore met without a handler: say which, rather than count them as 0 silently
        lines.append("ops without a FLOP handler (counted as 0): "
                     + ", ".join(f"{op} x{n}" for op, n in sorted(report.uncounted_ops.items())))
    return "\n".join(lines)
