"""How the command lines end on an expected error: one ``error: ...`` line and an exit status.

Each command line names the errors it expects and the status each ends with: :data:`BAD_INPUT`
(2) for input the user fixes (a config key, a file, a checkpoint), :data:`FAILED` (1) for work
that ran and went wrong. :func:`run_command` runs the command and turns such an error into
its line on stderr and its status; any other exception is a bug and keeps its traceback::

    ERROR_CODES = ((USER_ERRORS, BAD_INPUT), (TrainingError, FAILED))
    return run_command(run, args, codes=ERROR_CODES)

Imports only :mod:`stvit_video.utils.errors`, so ``--help`` and data_prep stay free of torch.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence, Tuple, Type, Union

from stvit_video.utils.errors import CheckpointError, ConfigError, DataError

__all__ = ["BAD_INPUT", "FAILED", "USER_ERRORS", "ErrorCodes", "error_line", "exit_code", "handled_classes",
           "run_command"]

# Exit statuses (0 = done).
FAILED = 1
BAD_INPUT = 2
# What the user fixes by changing the config, the data or the checkpoint.
USER_ERRORS: Tuple[Type[BaseException], ...] = (ConfigError, DataError, CheckpointError)

ErrorClasses = Union[Type[BaseException], Tuple[Type[BaseException], ...]]
# (error classes, exit status) pairs, most specific first: the first pair that matches wins,
# so a subclass (CheckpointError) can end differently from its base (RuntimeError).
ErrorCodes = Sequence[Tuple[ErrorClasses, int]]


def handled_classes(codes: ErrorCodes) -> Tuple[Type[BaseException], ...]:
    """Every error class of ``codes``, flattened for an ``except`` clause.

    Raises:
        ValueError: ``codes`` is empty or gives status 0 (which means success).
    """
    if not codes:
        raise ValueError("error codes: none given; pass (error classes, status) pairs, e.g. ((DataError, 2),)")
    classes: list[Type[BaseException]] = []
    for errors, code in codes:
        if code == 0:
            raise ValueError(f"error codes: {errors!r} -> status 0 would report success; use BAD_INPUT or FAILED")
        classes.extend(errors if isinstance(errors, tuple) else (errors,))
    return tuple(classes)


def exit_code(error: BaseException, codes: ErrorCodes) -> Optional[int]:
    """The status of the first pair of ``codes`` that ``error`` is an instance of; None if none is."""
    for errors, code in codes:
        if isinstance(error, errors):
            return code
    return None


def error_line(error: BaseException, *, one_line: bool = False) -> str:
    """``error: <message>``; ``one_line`` turns the message's line breaks into spaces."""
    message = str(error)
    if one_line:  # for messages that quote file contents, which may hold line breaks
        message = message.replace("\n", " ")
    return f"error: {message}"


def run_command(command: Callable[..., int], *args: object, codes: ErrorCodes, one_line: bool = False) -> int:
    """``command(*args)``'s exit status, or, when it raises an error of ``codes``, that error's
    status after printing its :func:`error_line` to stderr."""
    handled = handled_classes(codes)
    try:
        return command(*args)
    except handled as error:
        # sys.stderr looked up now, not bound at import: tests and callers may replace it
        print(error_line(error, one_line=one_line), file=sys.stderr)
        code = exit_code(error, codes)
        assert code is not None  # handled holds exactly the classes of codes
        return code
