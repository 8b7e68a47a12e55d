"""Session fixtures of the engine tests: the tiny colour data set (tests/helpers/colour_data.py),
a run trained and tested on it, and the shared 2-process run (tests/helpers/two_ranks.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.colour_data import tiny_overrides, write_colour_data
from tests.helpers.two_ranks import two_rank_results


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory) -> Path:
    """The colour data set, written once per session."""
    return write_colour_data(tmp_path_factory.mktemp("colour_data"))


@pytest.fixture(scope="session")
def trained_and_tested(colour_data, tmp_path_factory) -> Path:
    """A run trained 2 epochs and tested (2 clips x 3 crops) on the colour data: its OUTPUT_DIR."""
    from stvit_video.cli import main

    out = tmp_path_factory.mktemp("trained_and_tested")
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "SOLVER.MAX_EPOCH", 2)]) == 0
    return out


@pytest.fixture
def two_rank_run(tmp_path_factory) -> list:
    """Both ranks' results of the one 2-process gloo run of the session, shared by
    test_distributed and test_meters (started by the first test that asks for it)."""
    return two_rank_results(tmp_path_factory)
