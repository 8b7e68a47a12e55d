"""The error line and exit status of the five command lines, from one helper."""
import pytest

from data_prep import api as data_prep_api
from data_prep import cli as data_prep_cli
from stvit_video import cli as run_net_cli
from stvit_video import export_cli, predict_cli
from stvit_video.engine.export_onnx import OnnxUnavailableError
from stvit_video.report import __main__ as report_cli
from stvit_video.report.results import ResultsError
from stvit_video.utils.cli_errors import (BAD_INPUT, FAILED, error_line, exit_code, handled_classes,
                                          run_command)
from stvit_video.utils.errors import CheckpointError, ConfigError, DataError, TrainingError


def _raise(error: BaseException) -> int:
    raise error


def test_first_matching_pair_wins():
    codes = ((CheckpointError, BAD_INPUT), (RuntimeError, FAILED))
    assert exit_code(CheckpointError("x"), codes) == BAD_INPUT  # before its base class RuntimeError
    assert exit_code(DataError("x"), codes) == FAILED
    assert exit_code(ValueError("x"), codes) is None


def test_run_command_returns_the_status_or_prints_one_error_line(capsys):
    codes = (((DataError, OSError), BAD_INPUT),)
    assert run_command(lambda a, b: a + b, 0, 1, codes=codes) == 1
    assert capsys.readouterr().err == ""
    assert run_command(_raise, DataError("list train.csv: line 3: no label"), codes=codes) == 2
    assert capsys.readouterr().err == "error: list train.csv: line 3: no label\n"
    assert run_command(_raise, OSError("a\nb"), codes=codes, one_line=True) == 2
    assert capsys.readouterr().err == "error: a b\n"
    with pytest.raises(KeyError):  # not expected: a bug, with its traceback
        run_command(_raise, KeyError("x"), codes=codes)


def test_error_line_keeps_or_joins_lines():
    assert error_line(ValueError("a\nb")) == "error: a\nb"
    assert error_line(ValueError("a\nb"), one_line=True) == "error: a b"


def test_bad_codes_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="none given"):
        handled_classes(())
    with pytest.raises(ValueError, match="status 0 would report success"):
        handled_classes(((DataError, 0),))
    assert handled_classes(((DataError, 2), ((OSError, ValueError), 1))) == (DataError, OSError, ValueError)


# The exit status of each command line per error, as each had it in its own try/except.
STATUSES = [
    (run_net_cli, [(ConfigError, 2), (DataError, 2), (CheckpointError, 2), (TrainingError, 1), (ValueError, None),
                   (OSError, None)]),
    (predict_cli, [(ConfigError, 2), (DataError, 2), (CheckpointError, 2), (TrainingError, None), (OSError, None)]),
    (export_cli, [(CheckpointError, 2), (RuntimeError, 1), (DataError, 1), (TrainingError, 1), (ValueError, None),
                  (OnnxUnavailableError, 2), (ModuleNotFoundError, None)]),  # another missing module is a bug
    (report_cli, [(ResultsError, 2), (OSError, 2), (FileNotFoundError, 2), (ValueError, None)]),
    (data_prep_cli, [(data_prep_api.NoUsableVideoError, 1), (DataError, 2), (ValueError, 2), (ConfigError, 2),
                     (OSError, 2), (CheckpointError, None), (RuntimeError, None)]),
]


@pytest.mark.parametrize("module, statuses", STATUSES, ids=lambda v: getattr(v, "__name__", ""))
def test_each_command_line_keeps_its_statuses(module, statuses):
    for error, status in statuses:
        codes = module.error_codes() if module is export_cli else module.ERROR_CODES
        assert exit_code(error("x"), codes) == status, error


def test_the_export_formats_offered_without_torch_are_the_exporters():
    from stvit_video.engine.export import FORMATS

    assert export_cli.FORMAT_CHOICES == tuple(FORMATS)
