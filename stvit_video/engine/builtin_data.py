"""Built-in data sets a job can create for itself (``DATA.GENERATE_IF_MISSING``).

``mini_kinetics``: the motion-only mini-Kinetics of :mod:`data_prep.synthetic`, written to
``DATA.PATH_TO_DATA_DIR/source`` in the official annotation + CVDF layout and prepared by
``data_prep all`` into ``DATA.PATH_TO_DATA_DIR`` (lists, class names, resized videos), exactly
as a user prepares Kinetics. Nothing happens when the folder already has its ``train.csv``.
Both steps are calls of :mod:`data_prep.api`, the functions behind those command lines.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from fvcore.common.config import CfgNode

from stvit_video.utils.errors import DataError

if TYPE_CHECKING:  # data_prep is imported by the jobs that generate data only
    from data_prep.api import PrepareSummary

__all__ = ["BUILTIN_DATASETS", "ensure_builtin_data"]

logger = logging.getLogger(__name__)

# DATA.GENERATE_IF_MISSING choices ("" = never)
BUILTIN_DATASETS = ("", "mini_kinetics")

T = TypeVar("T")


def _run_step(command: Sequence[str], work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)``; an input error becomes a DataError naming the equivalent command line."""
    from data_prep.api import INPUT_ERRORS

    try:
        return work(*args, **kwargs)
    except INPUT_ERRORS as e:
        # the command line, to rerun the step by hand; the reason, which nothing else prints
        raise DataError(f"DATA.GENERATE_IF_MISSING: python -m data_prep {' '.join(command)} failed: {e}") from e


def _prepare(source: Path, root: Path, *, short_side: int, backend: str) -> PrepareSummary:
    """``data_prep all`` from ``source`` into ``root``; NoUsableVideoError when every list is empty."""
    from data_prep import api

    summary = api.prepare_all([source / "annotations"], source / "raw", root, short_side=short_side, backend=backend)
    summary.lists.check_usable()  # nothing to train on: the job would fail later, less clearly
    return summary


def ensure_builtin_data(cfg: CfgNode) -> bool:
    """Create the built-in data set of ``DATA.GENERATE_IF_MISSING`` if its lists are missing.

    Returns:
        True if it was created now.

    Raises:
        DataError: generating or preparing it failed (the message says which step and why).
    """
    if not cfg.DATA.GENERATE_IF_MISSING or (Path(cfg.DATA.PATH_TO_DATA_DIR) / "train.csv").is_file():
        return False
    from data_prep import api  # only jobs that generate data need data_prep

    root = Path(cfg.DATA.PATH_TO_DATA_DIR)
    source = root / "source"
    logger.info("DATA.GENERATE_IF_MISSING %s: %s has no train.csv; generating the built-in mini-Kinetics in %s",
                cfg.DATA.GENERATE_IF_MISSING, root, source)
    _run_step(["synthetic", "--out", str(source), "--no-next-step"], api.generate, source)
    short_side, backend = max(cfg.DATA.TRAIN_JITTER_SCALES), cfg.DATA.DECODING_BACKEND
    prepare = ["all", "--annotations", str(source / "annotations"), "--raw", str(source / "raw"), "--out", str(root),
               "--short-side", str(short_side), "--backend", backend, "--no-next-step"]
    summary = _run_step(prepare, _prepare, source, root, short_side=short_side, backend=backend)
    for warning in summary.index.result.warnings:
        logger.warning("DATA.GENERATE_IF_MISSING: %s", warning)
    logger.info("DATA.GENERATE_IF_MISSING: %s prepared, %d videos listed:\n%s", root, summary.usable, summary.table)
    return True
