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


def test_progress_without_a_terminal_is_a_plain_line_every_tenth(capsys):
    # under pytest stderr is captured, not a terminal: as in a log file or a Slurm job's output
    assert list(run_parallel(abs, list(range(-20, 0)), workers=1, desc="resize", progress=True)) == \
        list(range(20, 0, -1))
    err = capsys.readouterr().err
    assert "\r" not in err  # no bar redraws piling up in the log
    lines = err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"resize: {n}/20" for n in range(2, 21, 2)]
    assert lines[-1].startswith("resize: 20/20 (100%), ") and lines[-1].endswith("eta 0 s")
