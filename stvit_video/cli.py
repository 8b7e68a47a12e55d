"""Command line of ``tools/run_net.py``, ``python -m stvit_video`` and ``stvit-run``.

    run_net.py --cfg NAME_OR_YAML [--summary | --flops] [KEY VALUE ...] [--opts KEY VALUE ...]
    run_net.py --list-configs | --list-models

``--help``, ``--list-configs`` and ``--list-models`` answer without importing torch for the
first two (the model list needs the registry, hence torch).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from stvit_video.utils.cli_errors import BAD_INPUT, FAILED, USER_ERRORS, run_command
from stvit_video.utils.errors import TrainingError

_EPILOG = """\
Overrides: trailing KEY VALUE pairs (SlowFast's `--opts KEY VALUE ...` works too), applied
after the YAML file, e.g.  --cfg kinetics400 SOLVER.BASE_LR 0.0005 NUM_GPUS 0
"""
# A bad config, data set or checkpoint: exit 2; a run that went wrong while training: exit 1.
ERROR_CODES = ((USER_ERRORS, BAD_INPUT), (TrainingError, FAILED))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_net.py", description="Train and test STViT / Video Swin models on Kinetics.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", default=None,
                        help="YAML file or short name under configs/ (e.g. kinetics400); see --list-configs")
    parser.add_argument("--list-configs", action="store_true", help="print the config names and exit")
    parser.add_argument("--list-models", action="store_true",
                        help="print the model variants (MODEL.ARCH values) with GFLOPs per view and exit")
    parser.add_argument("--summary", action="store_true",
                        help="print the model's structure and parameter count for the config and exit")
    parser.add_argument("--flops", action="store_true",
                        help="print parameters and GFLOPs per view and per video for the config and exit")
    slowfast = parser.add_argument_group(
        "multi-node without torchrun (SlowFast style; set NUM_GPUS to the processes per node)")
    slowfast.add_argument("--num_shards", type=int, default=None, help="number of nodes (= NUM_SHARDS)")
    slowfast.add_argument("--shard_id", type=int, default=None, help="this node's index (= SHARD_ID)")
    slowfast.add_argument("--init_method", default=None,
                          help="rendezvous of node 0, e.g. tcp://10.0.0.1:9999 (= DIST.INIT_METHOD)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides (everything after --opts)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line; trailing ``KEY VALUE`` tokens and ``--opts`` both become overrides."""
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    for token in extra:
        if token.startswith("--"):
            parser.error(f"unknown option {token}")
    args.overrides = list(extra) + list(args.opts)
    for key, value in (("NUM_SHARDS", args.num_shards), ("SHARD_ID", args.shard_id),
                       ("DIST.INIT_METHOD", args.init_method)):
        if value is not None:
            args.overrides += [key, str(value)]
    if not (args.list_configs or args.list_models) and args.cfg_file is None:
        parser.error("--cfg is required (a YAML path or a name from --list-configs)")
    return args


def print_config_list(out=None) -> None:
    """One line per shipped config: name and description (to ``out``, default stdout)."""
    out = sys.stdout if out is None else out
    from stvit_video.config.loader import available_configs, describe_config

    configs = available_configs()
    width = max((len(n) for n in configs), default=0)
    for name, path in configs.items():
        print(f"{name:<{width}}  {describe_config(path)}", file=out)


def print_model_list(out=None) -> None:
    """One line per registered model variant: name, GFLOPs per view at its input, description."""
    out = sys.stdout if out is None else out
    from stvit_video.models.registry import VARIANTS

    width = max(len(n) for n in VARIANTS)
    for name, v in VARIANTS.items():
        flops = f"{v.gflops:7.2f} GFLOPs/view at {'x'.join(map(str, v.input_size[1:]))}" if v.gflops else ""
        print(f"{name:<{width}}  {flops}  {v.description}", file=out)


def run(args: argparse.Namespace) -> int:
    """Execute a parsed command line; returns the process exit code."""
    if args.list_configs:
        print_config_list()
        return 0
    if args.list_models:
        print_model_list()
        return 0
    from stvit_video.engine.config_check import load_run_config

    cfg = load_run_config(args.cfg_file, args.overrides)
    if args.summary or args.flops:
        from stvit_video.engine import model_report
        from stvit_video.utils.logging import setup_logging

        setup_logging()  # the checkpoint load report of --summary goes to the console

        if args.summary:
            print(model_report.summary(cfg))
        if args.flops:
            print(model_report.flops_table(cfg))
        return 0
    from stvit_video.engine.launch import launch_job

    results = launch_job(cfg)
    test = results.get("test")
    if test:
        shuffled = test.get("extra_results", {}).get("temporally shuffled clips")
        extra = f"  temporally shuffled: {shuffled['top1']:.2f}%" if shuffled else ""
        print(f"top-1 {test['top1']:.2f}%  top-5 {test['top5']:.2f}%  (1 view: {test['one_view_top1']:.2f}%){extra}  "
              f"report: {test['report']}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: errors in the user's config, data or checkpoints end with one clear line."""
    return run_command(run, parse_args(argv), codes=ERROR_CODES)


if __name__ == "__main__":
    sys.exit(main())
