"""The report built once per session from ``random_results`` (tests/helpers/results.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from stvit_video.report import EvalResults, build_report
from tests.helpers.results import FULL_META, random_results


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[EvalResults, dict, Path]:
    """One report built from ``random_results`` with full meta: (results, report dict, out dir)."""
    results = random_results(meta=FULL_META)
    out = tmp_path_factory.mktemp("report")
    return results, build_report(results, out), out
