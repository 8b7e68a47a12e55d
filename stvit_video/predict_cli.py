"""Command line of ``tools/predict.py`` and ``stvit-predict``: classes of video files.

    predict.py CHECKPOINT VIDEO_OR_FOLDER [...] [--topk 5] [--views 4x3] [--json OUT]

Prints, per video, the top classes with their mean view probability; a video that cannot be
decoded gets its reason. Exit codes: 0 when every video was predicted, 1 when some could not
be decoded, 2 for bad arguments, a missing file or an unusable checkpoint.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from stvit_video.utils.cli_errors import BAD_INPUT, USER_ERRORS, run_command
from stvit_video.utils.errors import ConfigError
from stvit_video.utils.video_formats import DECODER_BACKENDS
from stvit_video.utils.view_grid import ENSEMBLE_METHODS

if TYPE_CHECKING:  # the engine loads torch: not for --help
    from stvit_video.engine.predict import VideoPrediction

# Bad arguments, a missing file or an unusable checkpoint: exit 2 (some video undecodable: 1, see _predict).
ERROR_CODES = ((USER_ERRORS, BAD_INPUT),)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predict.py", description="Predict the classes of video files with a "
                                "stvit_video checkpoint (its classes and test transform are stored in it).")
    p.add_argument("checkpoint", help="best.pyth / last.pyth / checkpoint_epoch_*.pyth of a training run")
    p.add_argument("videos", nargs="+", help="video files, or folders searched for video files")
    p.add_argument("--topk", type=int, default=5, help="classes per video (default 5)")
    p.add_argument("--views", default=None, metavar="CLIPSxCROPS",
                   help="views per video, e.g. 1x1 for speed; default: the checkpoint's test protocol")
    p.add_argument("--ensemble", choices=ENSEMBLE_METHODS, default="sum", help="how view scores combine")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--backend", choices=DECODER_BACKENDS, default=None, help="video decoder")
    p.add_argument("--batch-size", type=int, default=12, help="views per forward pass")
    p.add_argument("--json", default=None, help="also write the predictions here as JSON")
    return p


def _views(text: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    if text is None:
        return None, None
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match[1]) < 1:
        raise ConfigError(f"--views {text!r}: use CLIPSxCROPS, e.g. 4x3 or 1x1 (at least 1 clip; 1 or 3 crops)")
    return int(match[1]), int(match[2])


def _print_results(results: Sequence[VideoPrediction]) -> None:
    """One line per video: its top classes, or why it could not be decoded."""
    for r in results:
        if r.error is not None:
            print(f"{r.path}: could not be decoded: {r.error}")
            continue
        best = ", ".join(f"{c.name} {100 * c.score:.1f}%" for c in r.top)
        print(f"{r.path}: {best}  ({r.views} views)")


def _write_json(path: str, results: Sequence[VideoPrediction]) -> None:
    """The predictions as a JSON list, one object per video (written atomically)."""
    import simplejson

    from stvit_video.utils.atomic import atomic_write_text

    rows = [{"video": r.path, "views": r.views, "error": r.error,
             "top": [{"class_id": c.class_id, "name": c.name, "score": c.score} for c in r.top]} for r in results]
    atomic_write_text(path, simplejson.dumps(rows, indent=1))


def _predict(args: argparse.Namespace) -> int:
    """Predict, print and (with ``--json``) save; 1 when some video could not be decoded."""
    from stvit_video.engine.predict import find_videos, predict_videos
    from stvit_video.utils.logging import setup_logging

    setup_logging(None, to_stderr=True)  # stdout holds the predictions only
    clips, crops = _views(args.views)
    videos = find_videos(args.videos)
    results = predict_videos(args.checkpoint, videos, topk=args.topk, clips=clips, crops=crops,
                             ensemble=args.ensemble, device=args.device, backend=args.backend,
                             batch_size=args.batch_size)
    _print_results(results)
    if args.json:
        _write_json(args.json, results)
    return 1 if any(r.error is not None for r in results) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error("--topk must be at least 1")
    return run_command(_predict, args, codes=ERROR_CODES)


if __name__ == "__main__":
    sys.exit(main())
