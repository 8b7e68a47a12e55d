"""Command line of ``python -m data_prep`` (and ``stvit-prep``).

    python -m data_prep index  --annotations CSV_OR_DIR [...] --raw RAW --out OUT [--layout auto]
    python -m data_prep resize --out OUT [--short-side 256] [--fps F] [--gop 32] [--shard I/N]
    python -m data_prep verify --out OUT [--backend decord]
    python -m data_prep lists  --out OUT
    python -m data_prep all    --annotations CSV_OR_DIR [...] --raw RAW --out OUT [options of the above]
    python -m data_prep folder (--src DIR | --csv LIST.csv) --out OUT [--val 0.2] [--seed 0] [--skip-empty]
    python -m data_prep synthetic --out DIR [--seed S] [--per-class N] [--size WxH] [--frames F] [--fps R]

Exit status: 0 done; 1 (``lists``, ``all``, ``folder``) no usable video came out; 2 an error in the input
(one ``error: ...`` line naming the file or option).

Each command parses its options, calls its function in :mod:`data_prep.api` and prints what
that returns; the work itself lives there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from data_prep import api
from data_prep.folder import DEFAULT_MIN_PER_CLASS, DEFAULT_VAL
from data_prep.index import missing_by_split
from data_prep.layouts import LAYOUTS
from data_prep.parallel import available_cpus
from data_prep.resize import ResizeOptions, parse_shard
from stvit_video.utils.cli_errors import BAD_INPUT, FAILED, run_command
from stvit_video.utils.video_formats import DECODER_BACKENDS

__all__ = ["ERROR_CODES", "build_parser", "main", "run"]

# Every list empty: exit 1; bad input (annotations, videos, options, files): exit 2.
ERROR_CODES = ((api.NoUsableVideoError, FAILED), (api.INPUT_ERRORS, BAD_INPUT))

_EPILOG = """\
typical run (Kinetics-400, CVDF download):
  python -m data_prep all --annotations k400/annotations --raw k400 --out data/k400 --workers 16
then train:  python tools/run_net.py --cfg kinetics400 DATA.PATH_TO_DATA_DIR data/k400
own videos:  python -m data_prep folder --src my_videos --out data/mine   (my_videos/<class name>/...)
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
    parser.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS),
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
    parser.add_argument("--backend", default=api.DEFAULT_BACKEND, choices=DECODER_BACKENDS,
                        help="decoder used by training (DATA.DECODING_BACKEND; default decord)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random frame checked per video")


def _add_folder(commands: "argparse._SubParsersAction") -> None:
    folder = commands.add_parser("folder", help="your own videos (a folder per class, or a path,label CSV), "
                                                "prepared like Kinetics")
    # both optional here: "exactly one" is checked by api.prepare_folder, so the error is one line
    folder.add_argument("--src", type=Path, default=None,
                        help="folder with a sub-folder per class (videos searched recursively), or with "
                             "train/ and val/ (and test/) folders of class folders, used as given")
    folder.add_argument("--csv", type=Path, default=None,
                        help="list of path,label[,split] rows (header optional; relative paths are relative "
                             "to the list's folder)")
    folder.add_argument("--val", type=float, default=DEFAULT_VAL,
                        help="fraction of each class drawn for val when no val split is given (default 0.2)")
    folder.add_argument("--seed", type=int, default=0,
                        help="seed of the val draw (and of verify's random frame; default 0)")
    folder.add_argument("--min-per-class", type=int, default=DEFAULT_MIN_PER_CLASS,
                        help="name the classes with fewer usable videos in the summary (default 5)")
    folder.add_argument("--skip-empty", action="store_true",
                        help="an empty class folder is a warning, not an error")
    _add_common(folder)
    _add_resize(folder)
    folder.add_argument("--backend", default=api.DEFAULT_BACKEND, choices=DECODER_BACKENDS,
                        help="decoder used by training (DATA.DECODING_BACKEND; default decord)")
    folder.add_argument("--no-next-step", action="store_true",
                        help="do not print the suggested training command (for callers that train next)")


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
    _add_folder(commands)
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


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def _print_index(step: api.IndexSummary) -> None:
    result = step.result
    how = "given"
    if result.layout_counts:
        how = "detected; rows matched per layout: " + ", ".join(f"{k} {v}" for k, v in result.layout_counts.items())
    print(f"index: layout {result.layout} ({how})")
    print(f"index: {len(result.rows)} clips -> {step.manifest}")
    for split, (missing, total) in missing_by_split(result.rows).items():
        bad = sum(r.status == "bad" for r in result.rows if r.split == split)
        print(f"  {split:<5}  {missing} of {total} videos missing ({100 * missing / total:.1f}%), {bad} unreadable")
    for warning in result.warnings:
        print(f"warning: {warning}")


def _print_collect(step: api.CollectSummary) -> None:
    found = step.collection
    bad = sum(row.status == "bad" for row in found.rows)
    classes = len({row.label for row in found.rows})
    print(f"folder: {len(found.rows)} videos of {classes} classes ({found.kind}, {found.source}); "
          f"{len(found.duplicates)} duplicates left out, {bad} unreadable, {len(found.skipped)} files skipped "
          f"-> {step.manifest}")
    splits = ", ".join(f"{split} {count}" for split, count in found.split_counts.items())
    print(f"folder: {splits} (splits: {found.split_rule})")
    for warning in found.warnings:
        print(f"warning: {warning}")


def _print_resize(step: api.ResizeSummary) -> None:
    report, (index, count) = step.report, step.report.shard
    encoded = report.count("encoded")
    rate = f", {encoded / report.seconds:.2f} videos/s" if encoded and report.seconds > 0 else ""
    shard_text = f" (shard {index}/{count}: {len(report.results)} of {step.total} clips)" if count > 1 else ""
    print(f"resize{shard_text}: {encoded} encoded, {report.count('skipped')} already done, "
          f"{report.count('failed')} failed, {report.count('missing')} without a raw file, "
          f"in {report.seconds:.1f} s{rate}")
    if report.count("failed"):
        print(f"resize: failures -> {step.failure_log}")


def _print_verify(step: api.VerifySummary) -> None:
    print(f"verify: {step.report.checked} videos decoded with {step.backend}, {len(step.report.bad)} bad "
          f"-> {step.bad_list}")


def _print_lists(step: api.ListsSummary) -> None:
    print(step.table)
    print(f"lists: {', '.join(p.name for p in step.written)} in {step.out}")


_STEP_PRINTERS = {api.IndexSummary: _print_index, api.CollectSummary: _print_collect, api.ResizeSummary: _print_resize,
                  api.VerifySummary: _print_verify, api.ListsSummary: _print_lists}


def _print_step(step: api.StepSummary) -> None:
    _STEP_PRINTERS[type(step)](step)


def _finish_lists(step: api.ListsSummary, args: argparse.Namespace) -> int:
    """Exit 1 (NoUsableVideoError) when every list is empty, else suggest the training command."""
    step.check_usable()
    if not args.no_next_step:
        print(f"train with:  python tools/run_net.py --cfg kinetics400 DATA.PATH_TO_DATA_DIR {args.out} "
              f"MODEL.NUM_CLASSES {len(step.report.class_names)}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    _print_index(api.index(args.annotations, args.raw, args.out, layout=args.layout, manifest=args.manifest,
                           workers=args.workers, progress=_progress(args)))
    return 0


def _resize_options(args: argparse.Namespace) -> ResizeOptions:
    return ResizeOptions(short_side=args.short_side, fps=args.fps, gop=args.gop, crf=args.crf, preset=args.preset,
                         mbtree=args.mbtree)


def cmd_resize(args: argparse.Namespace) -> int:
    _print_resize(api.resize(args.out, options=_resize_options(args), shard=parse_shard(args.shard),
                             manifest=args.manifest, workers=args.workers, progress=_progress(args)))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    _print_verify(api.verify(args.out, backend=args.backend, seed=args.seed, manifest=args.manifest,
                             workers=args.workers, progress=_progress(args)))
    return 0


def cmd_lists(args: argparse.Namespace) -> int:
    step = api.lists(args.out, manifest=args.manifest)
    _print_lists(step)
    return _finish_lists(step, args)


def cmd_all(args: argparse.Namespace) -> int:
    # on_step: each step's lines as soon as it is done, not all at the end
    summary = api.prepare_all(args.annotations, args.raw, args.out, layout=args.layout, short_side=args.short_side,
                              fps=args.fps, gop=args.gop, crf=args.crf, preset=args.preset, mbtree=args.mbtree,
                              backend=args.backend, seed=args.seed, manifest=args.manifest, workers=args.workers,
                              progress=_progress(args), on_step=_print_step)
    return _finish_lists(summary.lists, args)


# Entries per list (duplicates, unreadable, ...) printed by ``folder``; summary.txt has them all.
_PRINTED_ENTRIES = 10


def _print_folder_step(step: api.StepSummary) -> None:
    if not isinstance(step, api.ListsSummary):  # the table comes with the whole summary, at the end
        _print_step(step)


def cmd_folder(args: argparse.Namespace) -> int:
    summary = api.prepare_folder(args.out, src=args.src, csv=args.csv, val=args.val, seed=args.seed,
                                 min_per_class=args.min_per_class, skip_empty=args.skip_empty,
                                 short_side=args.short_side, fps=args.fps, gop=args.gop, crf=args.crf,
                                 preset=args.preset, mbtree=args.mbtree, backend=args.backend, manifest=args.manifest,
                                 workers=args.workers, progress=_progress(args), on_step=_print_folder_step)
    print(summary.format(limit=_PRINTED_ENTRIES))
    print(f"lists: {', '.join(p.name for p in summary.lists.written)} and {api.SUMMARY_FILE} in {summary.out}")
    summary.lists.check_usable()
    if not args.no_next_step:
        print(f"train with:  python tools/run_net.py --cfg kinetics400 DATA.PATH_TO_DATA_DIR {args.out} "
              f"MODEL.NUM_CLASSES {len(summary.class_names)}")
        print("  fine-tune from Kinetics weights: add TRAIN.CHECKPOINT_FILE_PATH <file.pth> TRAIN.CHECKPOINT_TYPE "
              "video_swin TRAIN.CHECKPOINT_REINIT_HEAD True")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"--size {text!r}: expected WxH, e.g. 128x96") from e
    return width, height


def cmd_synthetic(args: argparse.Namespace) -> int:
    from data_prep.synthetic import CLASSES

    width, height = _parse_size(args.size)
    report = api.generate(args.out, per_class=args.per_class, size=(width, height), frames=args.frames, fps=args.fps,
                          seed=args.seed, workers=args.workers, progress=_progress(args))
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
            "folder": cmd_folder, "synthetic": cmd_synthetic}


def run(args: argparse.Namespace) -> int:
    """Execute a parsed command line; returns the exit status."""
    return COMMANDS[args.command](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: an error in the user's input ends with one ``error: ...`` line and status 2
    (1 when every list came out empty)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_command(run, args, codes=ERROR_CODES)


if __name__ == "__main__":
    sys.exit(main())
