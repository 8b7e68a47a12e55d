"""Command line of ``tools/export.py`` and ``stvit-export``.

    export.py CHECKPOINT --out model.pt2                          # torch.export program
    export.py CHECKPOINT --out model.onnx [--opset 20]            # ONNX (format from the suffix)
    export.py CHECKPOINT --out model.bin --format onnx            # any name, format given

Writes a program (uint8 frames -> logits, any batch size) and a JSON card next to it; see
:mod:`stvit_video.engine.export`. ``--format`` defaults to the one ``--out``'s suffix names
(``.onnx``), else ``pt2``; a ``--format`` that contradicts the suffix is an error. Exit codes:
0 done, 2 unusable checkpoint, contradicting options or onnx packages missing, 1 when the
exported program does not match the eager model or cannot be exported (the message names the
operator ONNX lacks).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Optional, Sequence

from stvit_video.utils.cli_errors import BAD_INPUT, FAILED, run_command
from stvit_video.utils.errors import CheckpointError, ConfigError

FORMAT_CHOICES = ("pt2", "onnx")  # stvit_video.engine.export.FORMATS (a test ties them), without torch for --help


def error_codes() -> tuple[tuple[type[BaseException], int], ...]:
    """Exit 2 for what the user fixes: an unusable checkpoint, contradicting options (ConfigError),
    the onnx packages missing (OnnxUnavailableError, whose message gives the pip command; any
    other missing module is a bug and stays a traceback); any other RuntimeError (the program does
    not match the eager model, an operator cannot be exported): exit 1. CheckpointError is a
    RuntimeError, hence first. Imports torch (through export_onnx): call it after the parser."""
    from stvit_video.engine.export_onnx import OnnxUnavailableError

    return ((CheckpointError, BAD_INPUT), (ConfigError, BAD_INPUT), (OnnxUnavailableError, BAD_INPUT),
            (RuntimeError, FAILED))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export.py", description="Export a stvit_video checkpoint as a torch.export "
                                "program (.pt2) or an ONNX model (.onnx) with a JSON card (classes, transform, "
                                "provenance), checked against the eager model.")
    p.add_argument("checkpoint", help="best.pyth / last.pyth / checkpoint_epoch_*.pyth of a training run")
    p.add_argument("--out", required=True, help="program file to write, e.g. model.pt2 or model.onnx "
                                                "(the card: model.json)")
    p.add_argument("--format", choices=FORMAT_CHOICES, default=None,
                   help="pt2 (torch.export) or onnx; default: the one --out's suffix names, else pt2")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (onnx format only; default 20, at least 18)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |program - eager| accepted")
    return p


def _export(export_checkpoint: Callable[..., Any], args: argparse.Namespace) -> int:
    """Export with ``export_checkpoint`` and print what was written."""
    report = export_checkpoint(args.checkpoint, args.out, fmt=args.format, opset=args.opset,
                               tolerance=args.tolerance)
    runner = "program" if report.fmt == "pt2" else "onnxruntime"
    kind = "torch.export" if report.fmt == "pt2" else f"onnx opset {report.opset}"
    print(f"{report.program} ({report.card.name}): {kind}, input (B, {', '.join(map(str, report.input_shape[1:]))}) "
          f"uint8, max |{runner} - eager| = {report.max_abs_diff:.2g}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    # imported out here: a RuntimeError while torch loads is not an export failure (exit 1)
    from stvit_video.engine.export import export_checkpoint
    from stvit_video.utils.logging import setup_logging

    setup_logging(None, to_stderr=True)
    return run_command(_export, export_checkpoint, args, codes=error_codes())


if __name__ == "__main__":
    sys.exit(main())
