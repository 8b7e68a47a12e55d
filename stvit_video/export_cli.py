"""Command line of ``tools/export.py`` and ``stvit-export``.

    export.py CHECKPOINT --out model.pt2

Writes a ``torch.export`` program (uint8 frames -> logits, any batch size) and a JSON card
next to it; see :mod:`stvit_video.engine.export`. Exit codes: 0 done, 2 unusable checkpoint,
1 when the exported program does not match the eager model.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from stvit_video.utils.errors import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export.py", description="Export a stvit_video checkpoint as a torch.export "
                                "program (.pt2) with a JSON card (classes, transform, provenance).")
    p.add_argument("checkpoint", help="best.pyth / last.pyth / checkpoint_epoch_*.pyth of a training run")
    p.add_argument("--out", required=True, help="program file to write, e.g. model.pt2 (the card: model.json)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |program - eager| accepted")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from stvit_video.engine.export import export_checkpoint
    from stvit_video.utils.logging import setup_logging

    setup_logging(None, to_stderr=True)
    try:
        report = export_checkpoint(args.checkpoint, args.out, tolerance=args.tolerance)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{report.program} ({report.card.name}): input (B, {', '.join(map(str, report.input_shape[1:]))}) "
          f"uint8, max |program - eager| = {report.max_abs_diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
