"""Command line of ``tools/predict.py`` and ``stvit-predict``: classes of video files.

    predict.py CHECKPOINT VIDEO_OR_FOLDER [...] [--topk 5] [--views 4x3] [--json OUT]
               [--window SEC [--stride SEC] [--timeline OUT.png]] [--features OUT.npy]
               [--batch VIEWS] [--workers N]

Prints, per video (per time window with ``--window``), the top classes with their mean view
probability; a video that cannot be decoded gets its reason and the others go on. Exit codes:
0 when every video was predicted, 1 when some could not be decoded, 2 for bad arguments, a
missing file or an unusable checkpoint.
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
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=12,
                   help="views per forward pass, across videos (default 12)")
    p.add_argument("--workers", type=int, default=0,
                   help="loader processes decoding ahead of the model (default 0: decode in this process)")
    p.add_argument("--json", default=None, help="also write the predictions here as JSON")
    p.add_argument("--window", type=float, default=None, metavar="SEC",
                   help="long videos: predict every time window of SEC seconds (a timeline)")
    p.add_argument("--stride", type=float, default=None, metavar="SEC",
                   help="seconds between window starts (default: the window, i.e. no overlap)")
    p.add_argument("--timeline", default=None, metavar="PNG",
                   help="with --window: draw the top classes over time, one panel per video")
    p.add_argument("--features", default=None, metavar="NPY",
                   help="write the pooled embeddings (before the classifier) of every video or window to "
                        "this .npy, with a JSON index beside it")
    return p


def _views(text: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    if text is None:
        return None, None
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match[1]) < 1:
        raise ConfigError(f"--views {text!r}: use CLIPSxCROPS, e.g. 4x3 or 1x1 (at least 1 clip; 1 or 3 crops)")
    return int(match[1]), int(match[2])


def _where(r: VideoPrediction) -> str:
    return r.path if r.start is None else f"{r.path} [{r.start:.1f}-{r.end:.1f} s]"


def _print_results(results: Sequence[VideoPrediction]) -> None:
    """One line per video (per window): its top classes, or why it could not be decoded."""
    for r in results:
        if r.error is not None:
            print(f"{_where(r)}: could not be decoded: {r.error}")
            continue
        best = ", ".join(f"{c.name} {100 * c.score:.1f}%" for c in r.top)
        print(f"{_where(r)}: {best}  ({r.views} views)")


def _write_json(path: str, results: Sequence[VideoPrediction]) -> None:
    """The predictions as a JSON list, one object per video or window (written atomically)."""
    import simplejson

    from stvit_video.utils.atomic import atomic_write_text

    rows = [{"video": r.path, "start": r.start, "end": r.end, "views": r.views, "error": r.error,
             "top": [{"class_id": c.class_id, "name": c.name, "score": c.score} for c in r.top]} for r in results]
    atomic_write_text(path, simplejson.dumps(rows, indent=1))


def _write_features(path: str, results: Sequence[VideoPrediction], checkpoint: str) -> None:
    """Embeddings of the predicted videos / windows as one (N, D) float32 ``.npy``, and beside it
    ``<name>.json``: which video and window each row is (failed ones have no row)."""
    from pathlib import Path

    import numpy as np
    import simplejson

    from stvit_video.utils.atomic import atomic_write, atomic_write_text

    kept = [r for r in results if r.embedding is not None]
    matrix = np.stack([r.embedding for r in kept]).astype(np.float32) if kept else np.zeros((0, 0), np.float32)
    atomic_write(path, lambda f: np.save(f, matrix))
    index = {"features": Path(path).name, "shape": list(matrix.shape), "checkpoint": checkpoint,
             "meaning": "pooled last-stage features before the classifier, mean over the views",
             "rows": [{"row": i, "video": r.path, "start": r.start, "end": r.end} for i, r in enumerate(kept)]}
    atomic_write_text(Path(path).with_suffix(".json"), simplejson.dumps(index, indent=1))


def _write_timeline(path: str, results: Sequence[VideoPrediction]) -> None:
    from stvit_video.report.timeline import TimelineWindow, timeline_png
    from stvit_video.utils.atomic import atomic_write_bytes

    windows = [TimelineWindow(r.path, r.start, r.end, tuple((c.name, c.score) for c in r.top))
               for r in results if r.start is not None]
    if windows:
        atomic_write_bytes(path, timeline_png(windows))


def _predict(args: argparse.Namespace) -> int:
    """Predict, print and (with ``--json``) save; 1 when some video could not be decoded."""
    from stvit_video.engine.predict import find_videos, predict_videos
    from stvit_video.utils.logging import setup_logging

    setup_logging(None, to_stderr=True)  # stdout holds the predictions only
    clips, crops = _views(args.views)
    if args.timeline and args.window is None:
        raise ConfigError("--timeline draws the windows of --window SEC: add --window")
    if args.features and not args.features.endswith(".npy"):
        raise ConfigError(f"--features {args.features!r}: name a .npy file (its JSON index goes beside it)")
    videos = find_videos(args.videos)
    results = predict_videos(args.checkpoint, videos, topk=args.topk, clips=clips, crops=crops,
                             ensemble=args.ensemble, device=args.device, backend=args.backend,
                             batch_size=args.batch_size, workers=args.workers, window=args.window,
                             stride=args.stride, features=bool(args.features))
    _print_results(results)
    if args.json:
        _write_json(args.json, results)
    if args.features:
        _write_features(args.features, results, args.checkpoint)
    if args.timeline:
        _write_timeline(args.timeline, results)
    return 1 if any(r.error is not None for r in results) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error("--topk must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch must be at least 1")
    return run_command(_predict, args, codes=ERROR_CODES)


if __name__ == "__main__":
    sys.exit(main())
