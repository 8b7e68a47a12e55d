"""The tiny Kinetics-like raw data sets of tests/helpers/raw_kinetics.py, one per raw layout,
written once per test session."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.helpers.raw_kinetics import build_raw_set


@pytest.fixture(scope="session")
def raw_sets(tmp_path_factory) -> dict[str, SimpleNamespace]:
    """layout -> the raw set of tests/helpers/raw_kinetics.py in that layout."""
    return {layout: build_raw_set(tmp_path_factory.mktemp(f"raw_{layout}"), layout)
            for layout in ("cvdf", "classes", "untrimmed")}
