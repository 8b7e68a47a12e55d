"""Export a checkpoint for deployment: a ``torch.export`` program (``.pt2``) or an ONNX model
(``.onnx``), plus a JSON card.

The program takes raw frames, uint8 RGB ``(B, 3, T, H, W)`` in 0..255 with any batch
size, normalises them with the checkpoint's mean and std, and returns logits ``(B, K)``; the
card (``<out>.json``) holds what a deployment needs around it: class names in id order, the
test transform (frames x rate, short side, crop, views), the architecture, the checkpoint's
hash, the format and, for ONNX, the opset and the onnx / onnxruntime versions. After writing,
the file is loaded back (``torch.export.load``, or an ONNX Runtime CPU session) and compared
with the eager model on random frames at another batch size than the export's example; a
difference above ``tolerance`` is an error, not a warning, and leaves nothing at ``out``.

    program = torch.export.load("model.pt2").module()
    logits = program(frames_uint8)            # (B, K)

    session = onnxruntime.InferenceSession("model.onnx")   # opset 20 unless --opset says otherwise
    logits = session.run(None, {"frames": frames_uint8_numpy})[0]

The ONNX path (exporter, opset, the two changes our models need) is
:mod:`stvit_video.engine.export_onnx`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import simplejson
import torch
from torch import nn

from stvit_video.datasets.device_transforms import DeviceTransform
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import export_onnx
from stvit_video.engine.model_setup import build_checkpoint_model
from stvit_video.utils.atomic import atomic_output, atomic_write_text
from stvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "ExportReport", "NormalizedClassifier", "export_checkpoint", "resolve_format"]

MAX_BATCH = 4096  # upper bound of the dynamic batch dimension (torch.export needs one)
# format -> the suffix its files take; the first is the default
FORMATS = {"pt2": ".pt2", "onnx": ".onnx"}


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


def resolve_format(out: str | Path, fmt: Optional[str] = None) -> str:
    """The format to write ``out`` in: ``fmt`` when given, else the one its suffix names
    (``.onnx``, ``.pt2``), else ``pt2``.

    Raises:
        ConfigError: ``fmt`` is unknown, or ``out``'s suffix names the other format.
    """
    out = Path(out)
    implied = next((name for name, suffix in FORMATS.items() if out.suffix.lower() == suffix), None)
    if fmt is None:
        return implied or next(iter(FORMATS))
    if fmt not in FORMATS:
        raise ConfigError(f"export: --format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    if implied is not None and implied != fmt:
        raise ConfigError(f"export: --format {fmt} does not match --out {out} ({out.suffix} is the {implied} format); "
                          f"write {out.with_suffix(FORMATS[fmt]).name} or leave --format out")
    return fmt


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_checkpoint` wrote and how closely the program matches the eager model."""

    program: Path
    card: Path
    input_shape: tuple[int, ...]
    max_abs_diff: float
    fmt: str = "pt2"
    opset: Optional[int] = None  # ONNX only


def _write_pt2(wrapped: nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path) -> float:
    """Write the torch.export program to ``path``; returns max |loaded program - eager| on ``check``."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(wrapped, (example,), dynamic_shapes=({0: batch},))
    with open(path, "wb") as f:
        torch.export.save(program, f)
    with open(path, "rb") as f, torch.no_grad():
        return (torch.export.load(f).module()(check) - wrapped(check)).abs().max().item()


def _write_onnx(wrapped: nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path, opset: int) -> float:
    """Write the ONNX model to ``path``; returns max |ONNX Runtime (CPU) - eager| on ``check``."""
    path.write_bytes(export_onnx.to_onnx(wrapped, example, opset=opset, max_batch=MAX_BATCH))
    with torch.no_grad():
        return (export_onnx.OnnxRuntimeModel(path)(check) - wrapped(check)).abs().max().item()


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, fmt: Optional[str] = None,
                      opset: Optional[int] = None, tolerance: float = 1e-4, seed: int = 0) -> ExportReport:
    """Write ``out`` (a program with a dynamic batch) and ``out.json`` for ``checkpoint``.

    Args:
        fmt: ``pt2`` (torch.export) or ``onnx``; None: from ``out``'s suffix (``.onnx``), else pt2.
        opset: the ONNX opset (default :data:`~stvit_video.engine.export_onnx.DEFAULT_OPSET`, 20).
        tolerance: the largest max |program - eager| accepted (fp32 logits).

    Raises:
        ConfigError: ``fmt`` contradicts ``out``'s suffix, or ``opset`` does not fit the format.
        OnnxUnavailableError: the onnx format without onnx, onnxruntime or onnxscript installed.
        CheckpointError: the checkpoint cannot be read or does not fit its architecture.
        RuntimeError: the exported program differs from the eager model by more than ``tolerance``,
            or (ONNX) an operator has no translation; the message names it.
    """
    out = Path(out)
    fmt = resolve_format(out, fmt)
    extra: dict = {}
    if fmt == "onnx":  # settled before the checkpoint loads: a missing package fails at once
        opset = export_onnx.check_opset(export_onnx.DEFAULT_OPSET if opset is None else opset)
        extra = {"opset": opset, **export_onnx.onnx_versions()}
    elif opset is not None:
        raise ConfigError(f"export: --opset is for the onnx format; {out} is written as {fmt}")
    loaded = ckpt.load_for_inference(checkpoint)
    model = build_checkpoint_model(loaded, "export")
    transform = loaded.test_transform
    wrapped = NormalizedClassifier(model, transform["mean"], transform["std"]).eval()
    shape = (2, 3, int(transform["num_frames"]), int(transform["crop"]), int(transform["crop"]))
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    # check what a user will load, at a batch size other than the example's, before it becomes
    # `out`: a program that fails the check is never left where a deployment would pick it up
    check = torch.randint(0, 256, (3, *shape[1:]), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed + 1))
    what = "program" if fmt == "pt2" else "ONNX model (run by onnxruntime)"
    with atomic_output(out) as tmp:
        if fmt == "pt2":
            diff = _write_pt2(wrapped, frames, check, tmp)
        else:
            diff = _write_onnx(wrapped, frames, check, tmp, opset)
        if not diff <= tolerance:
            raise RuntimeError(f"export: the exported {what} differs from the eager model by {diff:.3g} "
                               f"(tolerance {tolerance:g}); nothing was written to {out}")
    card = out.with_suffix(".json")
    names = {"name": export_onnx.INPUT_NAME} if fmt == "onnx" else {}
    atomic_write_text(card, simplejson.dumps({
        "program": out.name, "format": fmt,
        "input": {**names, "shape": ["B", *shape[1:]], "layout": "B, C, T, H, W", "dtype": "uint8 in 0..255, RGB",
                  "normalisation": "inside the program (mean, std below)"},
        "output": {**({"name": export_onnx.OUTPUT_NAME} if fmt == "onnx" else {}),
                   "shape": ["B", int(loaded.arch["kwargs"]["num_classes"])], "meaning": "logits"},
        "class_names": loaded.class_names, "test_transform": transform, "arch": loaded.arch,
        "checkpoint": {"path": str(loaded.path), "sha256": loaded.sha256, "epoch": loaded.epoch},
        "torch": torch.__version__, **extra, "max_abs_diff_vs_eager": diff,
        "checked_with": "torch.export.load" if fmt == "pt2" else "onnxruntime CPUExecutionProvider",
        "checked_batch": check.shape[0]}, indent=1) + "\n")
    logger.info("export: %s (+ %s), %s, input (B, %s), max |%s - eager| = %.2g", out, card.name,
                fmt if fmt == "pt2" else f"onnx opset {opset}", ", ".join(map(str, shape[1:])),
                "program" if fmt == "pt2" else "onnxruntime", diff)
    return ExportReport(out, card, shape, diff, fmt, opset if fmt == "onnx" else None)
