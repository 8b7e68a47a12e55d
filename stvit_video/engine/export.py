"""Export a checkpoint for deployment: a ``torch.export`` program (``.pt2``) plus a JSON card.

The program takes raw frames, uint8 RGB ``(B, 3, T, H, W)`` in 0..255 with any batch
size, normalises them with the checkpoint's mean and std, and returns logits ``(B, K)``; the
card (``<out>.json``) holds what a deployment needs around it: class names in id order, the
test transform (frames x rate, short side, crop, views), the architecture and the
checkpoint's hash. After writing, the program is loaded back and compared with the eager
model on random frames; a difference above ``tolerance`` is an error, not a warning.

    program = torch.export.load("model.pt2").module()
    logits = program(frames_uint8)            # (B, K)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import simplejson
import torch
from torch import nn

from stvit_video.datasets.device_transforms import DeviceTransform
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine.model_setup import build_checkpoint_model
from stvit_video.utils.atomic import atomic_output, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["ExportReport", "NormalizedClassifier", "export_checkpoint"]

MAX_BATCH = 4096  # upper bound of the dynamic batch dimension (torch.export needs one)


class NormalizedClassifier(nn.Module):
    """``model`` behind the input normalisation: uint8 frames ``(B, C, T, H, W)`` -> logits ``(B, K)``."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        # the training pipeline's own constants: (x / 255 - mean) / std as one multiply-add
        scale, shift = DeviceTransform(mean, std).affine()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model(frames.float() * self.scale + self.shift)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_checkpoint` wrote and how closely the program matches the eager model."""

    program: Path
    card: Path
    input_shape: tuple[int, ...]
    max_abs_diff: float


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, tolerance: float = 1e-4,
                      seed: int = 0) -> ExportReport:
    """Write ``out`` (a ``.pt2`` program with a dynamic batch) and ``out.json`` for ``checkpoint``.

    Raises:
        CheckpointError: the checkpoint cannot be read or does not fit its architecture.
        RuntimeError: the exported program differs from the eager model by more than ``tolerance``.
    """
    loaded = ckpt.load_for_inference(checkpoint)
    model = build_checkpoint_model(loaded, "export")
    transform = loaded.test_transform
    wrapped = NormalizedClassifier(model, transform["mean"], transform["std"]).eval()
    shape = (2, 3, int(transform["num_frames"]), int(transform["crop"]), int(transform["crop"]))
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(wrapped, (frames,), dynamic_shapes=({0: batch},))
    out = Path(out)
    # check what a user will load, at a batch size other than the example's, before it becomes
    # `out`: a program that fails the check is never left where a deployment would pick it up
    check = torch.randint(0, 256, (3, *shape[1:]), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed + 1))
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as f:
            torch.export.save(program, f)
        with open(tmp, "rb") as f, torch.no_grad():
            diff = (torch.export.load(f).module()(check) - wrapped(check)).abs().max().item()
        if not diff <= tolerance:
            raise RuntimeError(f"export: the exported program differs from the eager model by {diff:.3g} "
                               f"(tolerance {tolerance:g}); nothing was written to {out}")
    card = out.with_suffix(".json")
    atomic_write_text(card, simplejson.dumps({
        "program": out.name, "input": {"shape": ["B", *shape[1:]], "layout": "B, C, T, H, W",
                                       "dtype": "uint8 in 0..255, RGB",
                                       "normalisation": "inside the program (mean, std below)"},
        "output": {"shape": ["B", int(loaded.arch["kwargs"]["num_classes"])], "meaning": "logits"},
        "class_names": loaded.class_names, "test_transform": transform, "arch": loaded.arch,
        "checkpoint": {"path": str(loaded.path), "sha256": loaded.sha256, "epoch": loaded.epoch},
        "torch": torch.__version__, "max_abs_diff_vs_eager": diff}, indent=1) + "\n")
    logger.info("export: %s (+ %s), input (B, %s), max |program - eager| = %.2g", out, card.name,
                ", ".join(map(str, shape[1:])), diff)
    return ExportReport(out, card, shape, diff)
