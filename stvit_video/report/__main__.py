"""``python -m stvit_video.report RESULTS --out DIR``: rebuild a report from saved test results.

RESULTS is a ``.npz`` or ``.pt`` file written by ``EvalResults.save``. A missing or unreadable
file, or inconsistent results, end with one ``error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from stvit_video.report.build import build_report, summary_text
from stvit_video.report.results import ResultsError, EvalResults
from stvit_video.utils.cli_errors import BAD_INPUT, run_command

# A missing, unreadable or inconsistent results file: exit 2.
ERROR_CODES = (((ResultsError, OSError), BAD_INPUT),)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stvit_video.report",
        description="Rebuild report.json, report.html and the figures from saved multi-view test results.")
    parser.add_argument("results", help="test results file (.npz or .pt) written by the tester")
    parser.add_argument("--out", required=True, help="folder for the report (created if needed)")
    parser.add_argument("--title", default="Evaluation report", help="title of report.html")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (0 done, 2 bad input)."""
    args = build_parser().parse_args(argv)
    # one_line: one error line, whatever the message quotes of the file
    return run_command(_rebuild, args, codes=ERROR_CODES, one_line=True)


def _rebuild(args: argparse.Namespace) -> int:
    """Load the results, write the report and print its summary."""
    results = EvalResults.load(args.results)
    report = build_report(results, args.out, title=args.title)
    print(summary_text(report, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
