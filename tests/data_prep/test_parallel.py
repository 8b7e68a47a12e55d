"""Worker processes: results in order, and a process that dies on one item does not stop the run."""
import os

import pytest

from data_prep.parallel import run_parallel


def square_or_die(x: int) -> int:
    if x == 3:
        os._exit(1)  # like a segfault inside FFmpeg: no exception, the process is gone
    return x * x


def test_results_in_order_and_a_crashing_item_is_isolated():
    items = list(range(7))
    results = list(run_parallel(square_or_die, items, workers=2, desc="t", progress=False,
                                on_crash=lambda x: -x))
    assert results == [0, 1, 4, -3, 16, 25, 36]
    with pytest.raises(RuntimeError, match="died while processing 3"):
        list(run_parallel(square_or_die, items, workers=2, desc="t", progress=False))


def test_one_worker_runs_in_process():
    assert list(run_parallel(abs, [-1, 2, -3], workers=1, desc="t", progress=False)) == [1, 2, 3]
