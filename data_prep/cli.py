"""Command line of ``python -m data_prep`` (and ``stvit-prep``).

    python -m data_prep index  --annotations CSV_OR_DIR [...] --raw RAW --out OUT [--layout auto]
    python -m data_prep resize --out OUT [--short-side 256] [--fps F] [--gop 32] [--shard I/N]
    python -m data_prep verify --out OUT [--backend decord]
    python -m data_prep lists  --out OUT
    python -m data_prep all    --annotations CSV_OR_DIR [...] --raw RAW --out OUT [options of the above]
    python -m data_prep synthetic --out DIR [--seed S] [--per-class N] [--size WxH] [--frames F] [--fps R]

Exit status: 0 done; 1 (``lists``, ``all``) no usable video came out; 2 an error in the input
(one ``error: ...`` line naming the file or option).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from data_prep.parallel import available_cpus
from stvit_video.utils.errors import DataError

__all__ = ["build_parser", "main", "run"]

_EPILOG = """\
typical run (Kinetics-400, CVDF download):
  python -m data_prep all --annotations k400/annotations --raw k400 --out data/k400 --workers 16
then train:  python tools/run_net.py --cfg kinetics400 DATA.PATH_TO_DATA_DIR data/k400
cluster:     python -m data_prep index ...; then N jobs of  python -m data_prep resize --out OUT
             --shard $SLURM_ARRAY_TASK_ID/N; then  python -m data_prep verify --out OUT; ... lists --out OUT
"""


def _add_common(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (videos, manifest, lists)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest file, .csv or .jsonl (default OUT/manifest.csv)")
    if workers:
        parser.add_argument("--workers", type=int, default=available_cpus(),
                            help="worker processes (default: the CPUs this job may use)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", nargs="+", required=True,
                        help="official Kinetics CSV files, or folders of *.csv (train.csv validate.csv test.csv)")
    parser.add_argument("--raw", required=True, type=Path, help="folder of the raw videos (searched recursively)")
    parser.add_argument("--layout", default="auto", choices=("auto", "cvdf", "classes", "untrimmed"),
                        help="cvdf: {id}_{start:06d}_{end:06d}.mp4; classes: <label>/{id}*.mp4; "
                             "untrimmed: {id}.mp4, cut to [time_start, time_end); auto: detect (default)")


def _add_resize(parser: argparse.ArgumentParser) -> None:
    from data_prep import resize

    parser.add_argument("--short-side", type=int, default=resize.DEFAULT_SHORT_SIDE,
                        help="short side of the output in pixels (default 256, as Video Swin; 320 also common)")
    parser.add_argument("--fps", type=float, default=None, help="constant output frame rate (default: keep the source's)")
    parser.add_argument("--gop", type=int, default=resize.DEFAULT_GOP,
                        help="keyframe interval in frames (default 32, ~1 s at 30 fps: cheap seeking for clip sampling)")
    parser.add_argument("--crf", type=int, default=resize.DEFAULT_CRF, help="x264 quality, lower is better (default 23)")
    parser.add_argument("--preset", default=resize.DEFAULT_PRESET, help="x264 preset (default veryfast)")
    parser.add_argument("--mbtree", action="store_true",
                        help="x264 macroblock tree on: smaller files, but re-runs are not byte-identical")


def _add_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="decord", choices=("decord", "pyav"),
                        help="decoder used by training (DATA.DECODING_BACKEND; default decord)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random frame checked per video")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=(
        "Prepare Kinetics: official annotation CSVs + raw videos -> resized, verified videos and "
        "the train/val/test lists of stvit-video."), epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    index = commands.add_parser("index", help="match annotation rows to raw files, write the manifest")
    _add_index(index)
    _add_common(index)
    resize = commands.add_parser("resize", help="re-encode the raw clips (short side, h264, short GOP)")
    _add_common(resize)
    _add_resize(resize)
    resize.add_argument("--shard", default="0/1", help="I/N: this job's share of N jobs (default 0/1 = all)")
    verify = commands.add_parser("verify", help="decode first, last and a random frame of every output")
    _add_common(verify)
    _add_verify(verify)
    lists = commands.add_parser("lists", help="write train/val/test.csv, classnames.txt, classids.json")
    _add_common(lists, workers=False)
    everything = commands.add_parser("all", help="index, resize, verify and lists in one go")
    _add_index(everything)
    _add_common(everything)
    _add_resize(everything)
    _add_verify(everything)
    for command in (lists, everything):
        command.add_argument("--no-next-step", action="store_true",
                             help="do not print the suggested training command (for callers that train next)")
    synthetic = commands.add_parser("synthetic", help="write the built-in mini-Kinetics (motion classes)")
    synthetic.add_argument("--out", required=True, type=Path, help="folder to write annotations/ and raw/ to")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--per-class", type=int, default=80,
                           help="training clips per class; val and test get a quarter each (default 80)")
    synthetic.add_argument("--size", default="128x96", help="WxH of the raw clips (default 128x96)")
    synthetic.add_argument("--frames", type=int, default=45, help="frames per clip (default 45)")
    synthetic.add_argument("--fps", type=int, default=15, help="frame rate (default 15)")
    synthetic.add_argument("--workers", type=int, default=available_cpus())
    synthetic.add_argument("--no-progress", action="store_true")
    synthetic.add_argument("--no-next-step", action="store_true",
                           help="do not print the suggested data_prep command (for callers that prepare next)")
    return parser


def _manifest_path(args: argparse.Namespace) -> Path:
    from data_prep.manifest import default_manifest_path

    return args.manifest if args.manifest is not None else default_manifest_path(args.out)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def cmd_index(args: argparse.Namespace) -> int:
    from data_prep.index import build_index, missing_by_split
    from data_prep.manifest import write_manifest

    result = build_index(args.annotations, args.raw, layout=args.layout, workers=args.workers,
                         progress=_progress(args))
    how = "given"
    if result.layout_counts:
        how = "detected; rows matched per layout: " + ", ".join(f"{k} {v}" for k, v in result.layout_counts.items())
    print(f"index: layout {result.layout} ({how})")
    path = write_manifest(_manifest_path(args), result.rows)
    print(f"index: {len(result.rows)} clips -> {path}")
    for split, (missing, total) in missing_by_split(result.rows).items():
        bad = sum(r.status == "bad" for r in result.rows if r.split == split)
        print(f"  {split:<5}  {missing} of {total} videos missing ({100 * missing / total:.1f}%), {bad} unreadable")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_resize(args: argparse.Namespace) -> int:
    from data_prep.manifest import read_manifest
    from data_prep.resize import ResizeOptions, failure_log_path, parse_shard, resize_all, write_encoding_info

    options = ResizeOptions(short_side=args.short_side, fps=args.fps, gop=args.gop, crf=args.crf, preset=args.preset,
                            mbtree=args.mbtree)
    shard = parse_shard(getattr(args, "shard", "0/1"))
    rows = read_manifest(_manifest_path(args))
    report = resize_all(rows, args.out, options, workers=args.workers, shard=shard, progress=_progress(args))
    write_encoding_info(args.out, options)
    encoded = [r for r in report.results if r.status == "encoded"]
    rate = f", {len(encoded) / report.seconds:.2f} videos/s" if encoded and report.seconds > 0 else ""
    shard_text = f" (shard {shard[0]}/{shard[1]}: {len(report.results)} of {len(rows)} clips)" if shard[1] > 1 else ""
    print(f"resize{shard_text}: {report.count('encoded')} encoded, {report.count('skipped')} already done, "
          f"{report.count('failed')} failed, {report.count('missing')} without a raw file, "
          f"in {report.seconds:.1f} s{rate}")
    if report.count("failed"):
        print(f"resize: failures -> {failure_log_path(args.out, shard)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from data_prep.manifest import read_manifest
    from data_prep.verify import BAD_LIST, verify_outputs, write_bad_list

    rows = read_manifest(_manifest_path(args))
    report = verify_outputs(rows, args.out, backend=args.backend, seed=args.seed, workers=args.workers,
                            progress=_progress(args))
    path = write_bad_list(args.out / BAD_LIST, report.bad)
    print(f"verify: {report.checked} videos decoded with {args.backend}, {len(report.bad)} bad -> {path}")
    return 0


def cmd_lists(args: argparse.Namespace) -> int:
    from data_prep.lists import build_lists, write_lists
    from data_prep.manifest import read_manifest
    from data_prep.summary import format_summary
    from data_prep.verify import BAD_LIST, read_bad_list
    from stvit_video.utils.atomic import atomic_write_text

    rows = read_manifest(_manifest_path(args))
    report = build_lists(rows, args.out, read_bad_list(args.out / BAD_LIST))
    written = write_lists(report, args.out)
    table = format_summary(report)
    atomic_write_text(args.out / "summary.txt", table + "\n")
    print(table)
    print(f"lists: {', '.join(p.name for p in written)} in {args.out}")
    usable = sum(len(v) for v in report.entries.values())
    if not usable:
        print("error: no usable video: every list is empty", file=sys.stderr)
        return 1
    if not args.no_next_step:
        print(f"train with:  python tools/run_net.py --cfg kinetics400 DATA.PATH_TO_DATA_DIR {args.out} "
              f"MODEL.NUM_CLASSES {len(report.class_names)}")
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    for step in (cmd_index, cmd_resize, cmd_verify):
        step(args)
    return cmd_lists(args)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"--size {text!r}: expected WxH, e.g. 128x96") from e
    return width, height


def cmd_synthetic(args: argparse.Namespace) -> int:
    from data_prep.synthetic import CLASSES, SyntheticSpec, generate

    width, height = _parse_size(args.size)
    spec = SyntheticSpec(width=width, height=height, frames=args.frames, fps=args.fps, per_class=args.per_class,
                         seed=args.seed)
    report = generate(args.out, spec, workers=args.workers, progress=_progress(args))
    splits = ", ".join(f"{k} {v}" for k, v in report.clips.items())
    print(f"synthetic: {sum(report.clips.values())} clips ({splits}) of {len(CLASSES)} classes, {width}x{height}, "
          f"{args.frames} frames at {args.fps} fps, in {report.seconds:.1f} s -> {args.out}")
    if not args.no_next_step:
        print(f"next: python -m data_prep all --annotations {args.out / 'annotations'} --raw {args.out / 'raw'} "
              f"--out OUT --short-side {min(width, height)}")
        print(f"then: python tools/run_net.py --cfg demo DATA.PATH_TO_DATA_DIR OUT  (the demo's model and "
              f"recipe; its configs set DATA.RANDOM_FLIP False, as these classes need)")
    return 0


COMMANDS = {"index": cmd_index, "resize": cmd_resize, "verify": cmd_verify, "lists": cmd_lists, "all": cmd_all,
            "synthetic": cmd_synthetic}


def run(args: argparse.Namespace) -> int:
    """Execute a parsed command line; returns the exit status."""
    return COMMANDS[args.command](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: an error in the user's input ends with one ``error: ...`` line and status 2."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run(args)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
