"""Command line of ``tools/visualize.py`` and ``stvit-visualize``: what the semantic tokens see.

    visualize.py --checkpoint CKPT VIDEO_OR_FOLDER [...] --out DIR [--class NAME|ID] [--tokens N]
                 [--json OUT.json] [--format gif|mp4] [--unit K] [--device auto]

Per video, from the centre clip x centre crop of the checkpoint's test transform:
``DIR/<stem>.png`` (one row per temporal slice: the frame, Grad-CAM, the assignment of image
tokens to semantic tokens, N semantic tokens' attention) and ``DIR/<stem>.gif`` (or ``.mp4``:
every frame with its Grad-CAM and assignment overlays); ``--json`` writes the raw maps. A model
without semantic tokens (Swin) gets Grad-CAM only. Exit codes as ``predict.py``: 0 when every
video was drawn, 1 when some could not be decoded, 2 for bad arguments, a missing file, an
unknown class or an unusable checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from stvit_video.utils.cli_errors import BAD_INPUT, USER_ERRORS, run_command

ERROR_CODES = ((USER_ERRORS, BAD_INPUT),)
FORMATS = ("gif", "mp4")  # stvit_video.report.token_maps.ANIMATION_FORMATS (not imported: --help stays light)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visualize.py", description="Draw what a stvit_video checkpoint looks at in "
                                "videos: semantic-token attention and assignment (STViT models) and Grad-CAM.")
    p.add_argument("--checkpoint", required=True, help="best.pyth / last.pyth / checkpoint_epoch_*.pyth of a run")
    p.add_argument("videos", nargs="+", help="video files, or folders searched for video files")
    p.add_argument("--out", required=True, help="folder for the pictures (created)")
    p.add_argument("--class", dest="target", default=None, metavar="NAME|ID",
                   help="class Grad-CAM explains (default: each video's predicted class)")
    p.add_argument("--tokens", type=int, default=None, metavar="N",
                   help="semantic tokens drawn per picture (default 4; not for models without semantic tokens)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every raw map here")
    p.add_argument("--format", choices=FORMATS, default="gif", help="animation format (default gif)")
    p.add_argument("--unit", type=int, default=-1, help="semantic-token unit drawn (default the last)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    return p


def _visualize(args: argparse.Namespace) -> int:
    from stvit_video.engine.predict import find_videos
    from stvit_video.engine.visualize import visualize_videos
    from stvit_video.utils.logging import setup_logging

    setup_logging(None, to_stderr=True)  # stdout lists the files written
    results = visualize_videos(args.checkpoint, find_videos(args.videos), args.out, target=args.target,
                               tokens=args.tokens, json_path=args.json, fmt=args.format, device=args.device,
                               unit=args.unit)
    for r in results:
        if r.error is not None:
            print(f"{r.path}: could not be decoded: {r.error}")
        else:
            p = r.maps.predicted
            print(f"{r.path}: {p.name} {100 * p.score:.1f}% -> {r.png}, {r.animation}")
    return 1 if any(r.error is not None for r in results) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    return run_command(_visualize, build_parser().parse_args(argv), codes=ERROR_CODES)


if __name__ == "__main__":
    sys.exit(main())
