"""Command line of ``tools/export.py`` and ``stvit-export``.

    export.py CHECKPOINT --out model.pt2

Writes a ``torch.export`` program (uint8 frames -> logits, any batch size) and a JSON card
next to it; see :mod:`stvit_video.engine.export`. Exit codes: 0 done, 2 unusable checkpoint,
1 when the exported program does not match the eager model.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Optional, Sequence

from stvit_video.utils.cli_errors import BAD_INPUT, FAILED, run_command
from stvit_video.utils.errors import CheckpointError

# An unusable checkpoint: exit 2; any other RuntimeError (the program does not match the eager
# model, torch.export failed): exit 1. CheckpointError is a RuntimeError, hence first.
ERROR_CODES = ((CheckpointError, BAD_INPUT), (RuntimeError, FAILED))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export.py", description="Export a stvit_video checkpoint as a torch.export "
                                "program (.pt2) with a JSON card (classes, transform, provenance).")
    p.add_argument("checkpoint", help="best.pyth / last.pyth / checkpoint_epoch_*.pyth of a training run")
    p.add_argument("--out", required=True, help="program file to write, e.g. model.pt2 (the card: model.json)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |program - eager| accepted")
    return p


def _export(export_checkpoint: Callable[..., Any], args: argparse.Namespace) -> int:
    """Export with ``export_checkpoint`` and print what was written."""
    report = export_checkpoint(args.checkpoint, args.out, tolerance=args.tolerance)
    print(f"{report.program} ({report.card.name}): input (B, {', '.join(map(str, report.input_shape[1:]))}) "
          f"uint8, max |program - eager| = {report.max_abs_diff:.2g}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    # imported out here: a RuntimeError while torch loads is not an export failure (exit 1)
    from stvit_video.engine.export import export_checkpoint
    from stvit_video.utils.logging import setup_logging

    setup_logging(None, to_stderr=True)
    return run_command(_export, export_checkpoint, args, codes=ERROR_CODES)


if __name__ == "__main__":
    sys.exit(main())
