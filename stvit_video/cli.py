"""Command line of ``tools/run_net.py``, ``python -m stvit_video`` and ``stvit-run``.

    run_net.py --cfg NAME_OR_YAML [--summary | --flops] [KEY VALUE ...] [--opts KEY VALUE ...]
    run_net.py --list-configs
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from stvit_video.utils.errors import CheckpointError, ConfigError, DataError

_EPILOG = """\
Overrides: trailing KEY VALUE pairs (SlowFast's `--opts KEY VALUE ...` works too), applied
after the YAML file, e.g.  --cfg kinetics400 SOLVER.BASE_LR 0.0005 NUM_GPUS 0
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_net.py", description="Train and test STViT / Video Swin models on Kinetics.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", default=None,
                        help="YAML file or short name under configs/ (e.g. kinetics400); see --list-configs")
    parser.add_argument("--list-configs", action="store_true", help="print the config names and exit")
    parser.add_argument("--summary", action="store_true",
                        help="print the model's structure and parameter count for the config and exit")
    parser.add_argument("--flops", action="store_true",
                        help="print parameters and GFLOPs per view and per video for the config and exit")
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
    if not args.list_configs and args.cfg_file is None:
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


def run(args: argparse.Namespace) -> int:
    """Execute a parsed command line; returns the process exit code."""
    from stvit_video.config import load_config

    if args.list_configs:
        print_config_list()
        return 0
    cfg = load_config(args.cfg_file, args.overrides)
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

    launch_job(cfg)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: errors in the user's config, data or checkpoints end with one clear line."""
    args = parse_args(argv)
    try:
        return run(args)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:
        print(f"not implemented yet: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
